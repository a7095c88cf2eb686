//! The daily orders files of the `shop` example (NDJSON), with their flaws:
//! exact duplicate lines, status updates of earlier orders, malformed lines,
//! null customer ids and non-positive quantities.
//!
//! Every order is drawn from its own generator (seeded with its id), so any
//! order of any day can be regenerated on its own — that is how a later file
//! repeats an earlier order with its newer status.

use std::collections::HashSet;
use std::io::Write;

use chrono::{Datelike, NaiveDate};
use rand::Rng;

use super::Plan;
use super::data::{Eligibility, Product, day_date, push_2, push_cents, push_date, push_int, rng, stream};

/// Orders per day per unit of scale (before weekday and random variation).
pub(crate) const ORDERS_PER_DAY_PER_SCALE: u64 = 3_400;

/// How many days back a status update may reach.
const UPDATE_WINDOW_DAYS: u32 = 7;

/// The order lifecycle states, in the order they happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Placed,
    Shipped,
    Delivered,
    Cancelled,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Placed => "placed",
            Status::Shipped => "shipped",
            Status::Delivered => "delivered",
            Status::Cancelled => "cancelled",
        }
    }
}

/// One order as drawn; its status depends on how many days later it is exported.
#[derive(Debug, Clone)]
struct Order {
    id: i64,
    customer_id: Option<i64>,
    product_id: i64,
    quantity: i64,
    price_cents: i64,
    /// Seconds after midnight.
    second: u32,
    cancel_after: Option<u32>,
    ship_after: u32,
    deliver_after: u32,
}

impl Order {
    /// The status `days` days after the order day.
    fn status_after(&self, days: u32) -> Status {
        match self.cancel_after {
            Some(c) if days >= c => Status::Cancelled,
            Some(_) => Status::Placed,
            None if days >= self.deliver_after => Status::Delivered,
            None if days >= self.ship_after => Status::Shipped,
            None => Status::Placed,
        }
    }
}

/// The id range of one day's orders.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DayInfo {
    pub(crate) first_id: i64,
    pub(crate) count: u64,
}

/// The number of orders of each day 1..=`upto` and their first ids: order ids
/// increase across days without reuse (the missing day's ids are a gap).
pub(crate) fn day_infos(plan: &Plan, upto: u32) -> Vec<DayInfo> {
    let mut out = Vec::with_capacity(upto as usize);
    let mut next = 1i64;
    for day in 1..=upto {
        let mut r = rng(plan.seed, stream::ORDER_COUNT, u64::from(day));
        let weekday = day_date(plan.start, i64::from(day)).weekday().num_days_from_monday() as usize;
        let factor = [960u64, 970, 990, 1000, 1030, 1060, 990][weekday.min(6)];
        let jitter: u64 = r.random_range(950..=1050);
        let count = (ORDERS_PER_DAY_PER_SCALE * u64::from(plan.scale) * factor / 1000 * jitter / 1000).max(10);
        out.push(DayInfo { first_id: next, count });
        next += count as i64;
    }
    out
}

/// The id range of `day` (1-based) in `infos`.
pub(crate) fn info_of(infos: &[DayInfo], day: u32) -> Option<DayInfo> {
    (day as usize).checked_sub(1).and_then(|i| infos.get(i)).copied()
}

/// Picks from `n` items, the earlier ones up to twice as often as average.
fn skewed(r: &mut impl Rng, n: usize) -> usize {
    let u: f64 = r.random();
    (((n as f64) * (u * (1.0 + u) * 0.5)) as usize).min(n.saturating_sub(1))
}

fn draw_order(seed: u64, products: &[Product], eligible: &[i64], info: DayInfo, index: u64) -> Order {
    let id = info.first_id + index as i64;
    let mut r = rng(seed, stream::ORDER, id as u64);
    let null_customer = r.random_bool(0.003);
    let customer_id = if null_customer || eligible.is_empty() { None } else { Some(eligible[skewed(&mut r, eligible.len())]) };
    let (product_id, price_cents) = match products.get(skewed(&mut r, products.len())) {
        Some(p) => (p.id, p.price_cents),
        None => (1, 100),
    };
    let mut quantity = match r.random_range(0..100) {
        0..45 => 1,
        45..70 => 2,
        70..82 => 3,
        82..89 => 4,
        89..93 => 5,
        w => 6 + (w - 93) % 5,
    };
    if r.random_range(0..1000) < 2 {
        quantity = [0, -1, -2][r.random_range(0..3)];
    }
    let jitter: u64 = r.random_range(0..86_400);
    let second = ((index * 86_400 + jitter) / info.count.max(1)).min(86_399) as u32;
    let fate = r.random_range(0..100);
    let (cancel_after, ship_after, deliver_after) = if fate < 3 {
        (Some(0), 0, 0)
    } else if fate < 7 {
        (Some(r.random_range(1..=3)), 0, 0)
    } else {
        let ship = match r.random_range(0..10) {
            0..2 => 0,
            2..7 => 1,
            _ => 2,
        };
        (None, ship, ship + r.random_range(1..=4))
    };
    Order { id, customer_id, product_id, quantity, price_cents, second, cancel_after, ship_after, deliver_after }
}

/// A deliberately malformed line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Corruption {
    /// `"quantity":"three"`.
    QuantityAsWord,
    /// `"order_ts":"2024-01-32T10:00:00"`.
    ImpossibleDate,
    /// The line is cut in the middle of the object.
    Truncated,
}

const NUMBER_WORDS: [&str; 11] = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"];

fn push_line(buf: &mut Vec<u8>, o: &Order, status: Status, date: NaiveDate, corruption: Option<Corruption>) {
    let start = buf.len();
    buf.extend_from_slice(b"{\"order_id\":");
    push_int(buf, o.id);
    buf.extend_from_slice(b",\"customer_id\":");
    match o.customer_id {
        Some(c) => push_int(buf, c),
        None => buf.extend_from_slice(b"null"),
    }
    buf.extend_from_slice(b",\"product_id\":");
    push_int(buf, o.product_id);
    buf.extend_from_slice(b",\"quantity\":");
    if corruption == Some(Corruption::QuantityAsWord) {
        buf.push(b'"');
        let word = usize::try_from(o.quantity).ok().and_then(|q| NUMBER_WORDS.get(q)).copied().unwrap_or("minus one");
        buf.extend_from_slice(word.as_bytes());
        buf.push(b'"');
    } else {
        push_int(buf, o.quantity);
    }
    buf.extend_from_slice(b",\"unit_price\":");
    push_cents(buf, o.price_cents);
    buf.extend_from_slice(b",\"status\":\"");
    buf.extend_from_slice(status.as_str().as_bytes());
    buf.extend_from_slice(b"\",\"order_ts\":\"");
    if corruption == Some(Corruption::ImpossibleDate) {
        push_int(buf, i64::from(date.year()));
        buf.push(b'-');
        push_2(buf, date.month());
        buf.extend_from_slice(b"-32");
    } else {
        push_date(buf, date);
    }
    buf.push(b'T');
    push_2(buf, o.second / 3600);
    buf.push(b':');
    push_2(buf, (o.second / 60) % 60);
    buf.push(b':');
    push_2(buf, o.second % 60);
    buf.extend_from_slice(b"\"}");
    if corruption == Some(Corruption::Truncated) {
        let len = buf.len() - start;
        buf.truncate(start + len * 3 / 5);
    }
    buf.push(b'\n');
}

/// What an orders file holds, beyond its own orders.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStats {
    /// The day's own orders (one line each, malformed ones included).
    pub(crate) orders: u64,
    /// Exact copies of lines of the same file.
    pub(crate) duplicates: u64,
    /// Earlier orders repeated with a later status.
    pub(crate) updates: u64,
    /// Malformed lines (bad number, impossible date, truncated).
    pub(crate) malformed: u64,
}

enum Extra {
    /// Repeat the line of this order index.
    Duplicate(u64),
    /// Repeat an order of an earlier day with today's status.
    Update { day: u32, index: u64 },
}

/// Writes the orders file of `day`. `infos` covers at least days 1..=`day`;
/// `eligible` knows the customers of `day` and of the days its updates reach
/// back to. With `with_updates` false the file holds no updates of earlier
/// orders (used for the late file, so that it can never undo a newer status).
pub(crate) fn write_orders<W: Write>(
    w: &mut W,
    plan: &Plan,
    products: &[Product],
    eligible: &Eligibility,
    infos: &[DayInfo],
    day: u32,
    with_updates: bool,
) -> std::io::Result<FileStats> {
    let Some(info) = info_of(infos, day) else {
        return Ok(FileStats::default());
    };
    let count = info.count;
    let date = day_date(plan.start, i64::from(day));
    let mut r = rng(plan.seed, stream::DAY_EVENTS, u64::from(day));

    // A few malformed lines: two bad numbers, two impossible dates, one cut line.
    let mut corrupt: Vec<(u64, Corruption)> = Vec::new();
    for kind in [
        Corruption::QuantityAsWord,
        Corruption::QuantityAsWord,
        Corruption::ImpossibleDate,
        Corruption::ImpossibleDate,
        Corruption::Truncated,
    ] {
        for _ in 0..100 {
            let i = r.random_range(0..count);
            if !corrupt.iter().any(|(c, _)| *c == i) {
                corrupt.push((i, kind));
                break;
            }
        }
    }
    let corruption_of = |i: u64| corrupt.iter().find(|(c, _)| *c == i).map(|(_, k)| *k);

    // ~1% exact duplicates, placed elsewhere in the file.
    let mut extras: Vec<(u64, Extra)> = Vec::new();
    for _ in 0..count / 100 {
        let src = r.random_range(0..count);
        let mut after = r.random_range(0..count);
        if after == src {
            after = (after + 1) % count;
        }
        if corruption_of(src).is_none() {
            extras.push((after, Extra::Duplicate(src)));
        }
    }

    // ~0.5% updates: orders of the previous week whose status has moved on.
    let window: Vec<u32> = if with_updates {
        (day.saturating_sub(UPDATE_WINDOW_DAYS).max(1)..day)
            .filter(|d| !plan.missing_days.contains(d) && !plan.late_days.contains(d))
            .collect()
    } else {
        Vec::new()
    };
    if !window.is_empty() {
        let target = count * 5 / 1000;
        let mut seen = HashSet::new();
        let mut attempts = 0;
        while (seen.len() as u64) < target && attempts < target * 4 {
            attempts += 1;
            let d = window[r.random_range(0..window.len())];
            let Some(from) = info_of(infos, d) else { continue };
            let index = r.random_range(0..from.count);
            let after = r.random_range(0..count);
            let o = draw_order(plan.seed, products, eligible.ids(d), from, index);
            if o.status_after(day - d) != o.status_after(0) && seen.insert(o.id) {
                extras.push((after, Extra::Update { day: d, index }));
            }
        }
    }
    extras.sort_by_key(|(after, _)| *after);

    let ids = eligible.ids(day);
    let mut stats = FileStats { orders: count, malformed: corrupt.len() as u64, ..FileStats::default() };
    let mut buf = Vec::with_capacity(256);
    let mut next_extra = extras.iter().peekable();
    for i in 0..count {
        buf.clear();
        let o = draw_order(plan.seed, products, ids, info, i);
        push_line(&mut buf, &o, o.status_after(0), date, corruption_of(i));
        while let Some((_, extra)) = next_extra.next_if(|(after, _)| *after == i) {
            match extra {
                Extra::Duplicate(src) => {
                    let o = draw_order(plan.seed, products, ids, info, *src);
                    push_line(&mut buf, &o, o.status_after(0), date, None);
                    stats.duplicates += 1;
                }
                Extra::Update { day: d, index } => {
                    if let Some(from) = info_of(infos, *d) {
                        let o = draw_order(plan.seed, products, eligible.ids(*d), from, *index);
                        push_line(&mut buf, &o, o.status_after(day - d), day_date(plan.start, i64::from(*d)), None);
                        stats.updates += 1;
                    }
                }
            }
        }
        w.write_all(&buf)?;
    }
    Ok(stats)
}
