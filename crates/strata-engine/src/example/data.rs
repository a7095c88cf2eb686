//! Products and customers of the `shop` example, the seeded random number
//! generators everything is drawn from, and small text-formatting helpers.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::sync::Arc;

use chrono::{Datelike, Days, NaiveDate};
use datafusion::arrow::array::{Float64Array, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Independent random streams: every kind of draw has its own, so adding a
/// draw of one kind never shifts the values of another.
pub(crate) mod stream {
    /// The product catalogue.
    pub(crate) const PRODUCTS: u64 = 1;
    /// The customers that exist at the end of the initial period.
    pub(crate) const CUSTOMERS: u64 = 2;
    /// The changes to the customers on one later day.
    pub(crate) const CUSTOMER_CHANGES: u64 = 3;
    /// The flawed rows of one customer snapshot.
    pub(crate) const SNAPSHOT: u64 = 4;
    /// The number of orders of one day.
    pub(crate) const ORDER_COUNT: u64 = 5;
    /// Duplicates, updates and malformed lines of one day's orders file.
    pub(crate) const DAY_EVENTS: u64 = 6;
    /// The attributes of the orders of one day (16 words per order).
    pub(crate) const ORDER: u64 = 7;
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The generator for draw `index` (a day, an order id, …) of `stream`.
pub(crate) fn rng(seed: u64, stream: u64, index: u64) -> ChaCha8Rng {
    let mut r =
        ChaCha8Rng::seed_from_u64(splitmix64(seed) ^ splitmix64(index ^ 0x5354_5241_5441_0000));
    r.set_stream(stream);
    r
}

/// The calendar date of day `day` (day 1 is `start`; 0 and below are before it).
pub(crate) fn day_date(start: NaiveDate, day: i64) -> NaiveDate {
    let offset = day - 1;
    let moved = if offset >= 0 {
        start.checked_add_days(Days::new(offset.unsigned_abs()))
    } else {
        start.checked_sub_days(Days::new(offset.unsigned_abs()))
    };
    moved.unwrap_or(start)
}

/// Appends a decimal integer.
pub(crate) fn push_int(buf: &mut Vec<u8>, v: i64) {
    if v < 0 {
        buf.push(b'-');
    }
    let mut n = v.unsigned_abs();
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

/// Appends a number below 100 as two digits.
pub(crate) fn push_2(buf: &mut Vec<u8>, v: u32) {
    buf.push(b'0' + ((v / 10) % 10) as u8);
    buf.push(b'0' + (v % 10) as u8);
}

/// Appends an amount in cents as a plain decimal with two places (`19.90`).
pub(crate) fn push_cents(buf: &mut Vec<u8>, cents: i64) {
    push_int(buf, cents / 100);
    buf.push(b'.');
    push_2(buf, (cents % 100).unsigned_abs() as u32);
}

/// Appends `YYYY-MM-DD`.
pub(crate) fn push_date(buf: &mut Vec<u8>, d: NaiveDate) {
    let y = d.year();
    if (0..10_000).contains(&y) {
        let y = y as u32;
        push_2(buf, y / 100);
        push_2(buf, y % 100);
    } else {
        push_int(buf, i64::from(y));
    }
    buf.push(b'-');
    push_2(buf, d.month());
    buf.push(b'-');
    push_2(buf, d.day());
}

/// `YYYY-MM-DD` as a string.
pub(crate) fn date_text(d: NaiveDate) -> String {
    let mut b = Vec::with_capacity(10);
    push_date(&mut b, d);
    String::from_utf8_lossy(&b).into_owned()
}

// ---------------------------------------------------------------- products

/// One row of the product catalogue.
#[derive(Debug, Clone)]
pub(crate) struct Product {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) category: &'static str,
    pub(crate) price_cents: i64,
}

/// Number of products in the catalogue.
pub(crate) const PRODUCT_COUNT: usize = 200;

const CATEGORIES: [(&str, [&str; 8], i64, i64); 8] = [
    (
        "electronics",
        [
            "Headphones",
            "Charger",
            "Keyboard",
            "Mouse",
            "Speaker",
            "Webcam",
            "Monitor",
            "Power Bank",
        ],
        1_500,
        50_000,
    ),
    (
        "home",
        [
            "Lamp",
            "Cushion",
            "Vase",
            "Blanket",
            "Mirror",
            "Wall Clock",
            "Rug",
            "Candle",
        ],
        500,
        20_000,
    ),
    (
        "garden",
        [
            "Hose",
            "Planter",
            "Shears",
            "Rake",
            "Bird Feeder",
            "Watering Can",
            "Gloves",
            "Seed Kit",
        ],
        300,
        15_000,
    ),
    (
        "toys",
        [
            "Puzzle",
            "Robot",
            "Kite",
            "Building Set",
            "Plush Bear",
            "Board Game",
            "Yo-Yo",
            "Train Set",
        ],
        500,
        12_000,
    ),
    (
        "books",
        [
            "Cookbook",
            "Novel",
            "Atlas",
            "Notebook",
            "Travel Guide",
            "Poetry Collection",
            "Comic",
            "Journal",
        ],
        500,
        6_000,
    ),
    (
        "sports",
        [
            "Yoga Mat",
            "Dumbbell",
            "Water Bottle",
            "Tennis Racket",
            "Football",
            "Jump Rope",
            "Helmet",
            "Running Belt",
        ],
        800,
        25_000,
    ),
    (
        "beauty",
        [
            "Face Cream",
            "Shampoo",
            "Lip Balm",
            "Perfume",
            "Hair Brush",
            "Soap Set",
            "Nail Kit",
            "Sunscreen",
        ],
        300,
        9_000,
    ),
    (
        "grocery",
        [
            "Coffee Beans",
            "Green Tea",
            "Olive Oil",
            "Dark Chocolate",
            "Honey",
            "Pasta",
            "Granola",
            "Spice Mix",
        ],
        100,
        4_000,
    ),
];

const ADJECTIVES: [&str; 12] = [
    "Classic",
    "Deluxe",
    "Compact",
    "Premium",
    "Eco",
    "Smart",
    "Vintage",
    "Essential",
    "Ultra",
    "Mini",
    "Pro",
    "Cozy",
];

/// The 200 products (ids 1..=200), the same for every seed-compatible run.
pub(crate) fn products(seed: u64) -> Vec<Product> {
    let mut r = rng(seed, stream::PRODUCTS, 0);
    let mut names = HashSet::new();
    let mut out = Vec::with_capacity(PRODUCT_COUNT);
    for i in 0..PRODUCT_COUNT {
        let (category, nouns, min, max) = CATEGORIES[r.random_range(0..CATEGORIES.len())];
        let noun = nouns[r.random_range(0..nouns.len())];
        let mut name = String::new();
        for _ in 0..8 {
            name = format!(
                "{} {}",
                ADJECTIVES[r.random_range(0..ADJECTIVES.len())],
                noun
            );
            if !names.contains(&name) {
                break;
            }
        }
        if names.contains(&name) {
            name = format!("{name} {}", i + 1);
        }
        names.insert(name.clone());
        // Cheaper prices are more common: the smaller of two uniform draws.
        let span = max - min;
        let a = r.random_range(0..=span);
        let b = r.random_range(0..=span);
        let dollars = (min + a.min(b)) / 100;
        let ending = [99, 49, 0, 95][r.random_range(0..4)];
        let price_cents = (dollars * 100 + ending).clamp(100, 50_000);
        out.push(Product {
            id: i as i64 + 1,
            name,
            category,
            price_cents,
        });
    }
    out
}

/// Writes the catalogue as Parquet.
pub(crate) fn write_products_parquet<W: Write + Send>(
    w: W,
    products: &[Product],
) -> Result<(), String> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("product_id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("category", DataType::Utf8, true),
        Field::new("price", DataType::Float64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values(products.iter().map(|p| p.id))),
            Arc::new(StringArray::from_iter_values(
                products.iter().map(|p| p.name.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                products.iter().map(|p| p.category),
            )),
            Arc::new(Float64Array::from_iter_values(
                products.iter().map(|p| p.price_cents as f64 / 100.0),
            )),
        ],
    )
    .map_err(|e| e.to_string())?;
    let mut writer = ArrowWriter::try_new(w, schema, None).map_err(|e| e.to_string())?;
    writer.write(&batch).map_err(|e| e.to_string())?;
    writer.close().map_err(|e| e.to_string())?;
    Ok(())
}

// ---------------------------------------------------------------- customers

/// Customers per unit of scale.
pub(crate) const CUSTOMERS_PER_SCALE: u64 = 2_000;
/// The id of the first customer.
const FIRST_CUSTOMER_ID: i64 = 10_001;

const FIRST_NAMES: [&str; 40] = [
    "Jane", "John", "Maria", "Ahmed", "Li", "Sofia", "Lukas", "Emma", "Noah", "Olivia", "Mateo",
    "Aisha", "Yuki", "Elena", "Omar", "Chloe", "Ivan", "Priya", "Lars", "Fatima", "Diego",
    "Hannah", "Kofi", "Mia", "Leon", "Amara", "Tom", "Nina", "Ravi", "Clara", "Jonas", "Zara",
    "Felix", "Lea", "Samuel", "Ines", "Hugo", "Alice", "Marek", "Eva",
];

const LAST_NAMES: [&str; 40] = [
    "Doe",
    "Smith",
    "Garcia",
    "Khan",
    "Wei",
    "Rossi",
    "Muller",
    "Johnson",
    "Brown",
    "Silva",
    "Lopez",
    "Okafor",
    "Tanaka",
    "Petrov",
    "Haddad",
    "Martin",
    "Novak",
    "Patel",
    "Larsen",
    "Yilmaz",
    "Fernandez",
    "Schmidt",
    "Mensah",
    "Dubois",
    "Weber",
    "Nwosu",
    "Clark",
    "Berg",
    "Sharma",
    "Costa",
    "Fischer",
    "Ali",
    "Wagner",
    "Moreau",
    "Kowalski",
    "Santos",
    "Lambert",
    "Walker",
    "Horvat",
    "Lindqvist",
];

const DOMAINS: [&str; 5] = [
    "example.com",
    "example.org",
    "example.net",
    "mail.example",
    "shop.example",
];

/// The customer regions.
pub(crate) const REGIONS: [&str; 5] = ["north", "south", "east", "west", "central"];
const REGION_WEIGHTS: [u32; 5] = [22, 20, 18, 25, 15];

/// One customer, as the upstream system exports it.
#[derive(Debug, Clone)]
pub(crate) struct Customer {
    pub(crate) id: i64,
    first: usize,
    last: usize,
    /// As exported: sometimes with stray leading or trailing spaces.
    pub(crate) name: String,
    /// As exported: sometimes empty, sometimes in mixed case.
    pub(crate) email: String,
    pub(crate) region: usize,
    /// Day index of the signup (day 1 is the start date; earlier days are ≤ 0).
    pub(crate) signup_day: i64,
    /// The day the customer was deleted upstream (it reappears the day after).
    pub(crate) removed_on: Option<u32>,
}

impl Customer {
    /// Present in the upstream table on `day`.
    pub(crate) fn exists_on(&self, day: u32) -> bool {
        self.removed_on.is_none() && self.signup_day <= i64::from(day)
    }
}

fn region(r: &mut ChaCha8Rng) -> usize {
    let mut x = r.random_range(0..REGION_WEIGHTS.iter().sum::<u32>());
    for (i, w) in REGION_WEIGHTS.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    0
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

/// An e-mail address: 0.5% empty, 4% in mixed case (`Jane.Doe42@Example.com`).
fn email(r: &mut ChaCha8Rng, first: usize, last: usize) -> String {
    let flaw = r.random_range(0..1000);
    let number = r.random_range(0..1000);
    let domain = DOMAINS[r.random_range(0..DOMAINS.len())];
    if flaw < 5 {
        return String::new();
    }
    let f = FIRST_NAMES[first].to_ascii_lowercase();
    let l = LAST_NAMES[last].to_ascii_lowercase();
    let (f, l, domain) = if flaw < 45 {
        (capitalized(&f), capitalized(&l), capitalized(domain))
    } else {
        (f, l, domain.to_string())
    };
    if number < 200 {
        format!("{f}.{l}@{domain}")
    } else {
        format!("{f}.{l}{number}@{domain}")
    }
}

fn new_customer(r: &mut ChaCha8Rng, id: i64, signup_day: i64) -> Customer {
    let first = r.random_range(0..FIRST_NAMES.len());
    let last = r.random_range(0..LAST_NAMES.len());
    let plain = format!("{} {}", FIRST_NAMES[first], LAST_NAMES[last]);
    // 3% of names carry stray spaces.
    let name = match r.random_range(0..1000) {
        0..15 => format!(" {plain}"),
        15..25 => format!("{plain} "),
        25..30 => format!("  {plain}  "),
        _ => plain,
    };
    let email = email(r, first, last);
    let region = region(r);
    Customer {
        id,
        first,
        last,
        name,
        email,
        region,
        signup_day,
        removed_on: None,
    }
}

/// The customers existing at the end of the initial period, ordered by signup
/// (and so by id): 90% signed up in the three years before the start, 10%
/// during the initial period.
pub(crate) fn base_customers(seed: u64, scale: u32, initial_days: u32) -> Vec<Customer> {
    let n = CUSTOMERS_PER_SCALE * u64::from(scale);
    let mut r = rng(seed, stream::CUSTOMERS, 0);
    let last_day = i64::from(initial_days.max(1));
    let mut signups: Vec<i64> = (0..n)
        .map(|_| {
            if r.random_range(0..100) < 90 {
                r.random_range(-1094..=0)
            } else {
                r.random_range(1..=last_day)
            }
        })
        .collect();
    signups.sort_unstable();
    signups
        .into_iter()
        .enumerate()
        .map(|(i, day)| new_customer(&mut r, FIRST_CUSTOMER_ID + i as i64, day))
        .collect()
}

/// Applies one later day's upstream changes: customers deleted the day before
/// come back, ~2% change region or e-mail, ~0.5% are deleted, ~0.5% new ones
/// sign up.
pub(crate) fn apply_changes(customers: &mut Vec<Customer>, seed: u64, day: u32) {
    let mut r = rng(seed, stream::CUSTOMER_CHANGES, u64::from(day));
    for c in customers.iter_mut() {
        if c.removed_on.is_some_and(|d| d < day) {
            c.removed_on = None;
        }
    }
    let n = customers.len();
    if n == 0 {
        return;
    }
    let active = customers.iter().filter(|c| c.removed_on.is_none()).count() as u64;
    for _ in 0..active * 2 / 100 {
        let i = r.random_range(0..n);
        let change_region = r.random_bool(0.5);
        let c = &mut customers[i];
        if c.removed_on.is_some() {
            continue;
        }
        if change_region {
            c.region = (c.region + r.random_range(1..REGIONS.len())) % REGIONS.len();
        } else {
            c.email = email(&mut r, c.first, c.last);
        }
    }
    for _ in 0..active * 5 / 1000 {
        let i = r.random_range(0..n);
        if customers[i].removed_on.is_none() {
            customers[i].removed_on = Some(day);
        }
    }
    let first_new = customers.last().map_or(FIRST_CUSTOMER_ID, |c| c.id + 1);
    let new_count = (active * 5 / 1000).max(1) as i64;
    for id in first_new..first_new + new_count {
        let c = new_customer(&mut r, id, i64::from(day));
        customers.push(c);
    }
}

/// Counts of the flawed rows of a snapshot.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SnapshotStats {
    /// Data rows written (the short line included).
    pub(crate) rows: u64,
}

/// Writes the snapshot of the customers existing on `day` as CSV. One row is
/// cut short (`id,name`) and one carries the signup date `2024-02-31`.
pub(crate) fn write_customers_csv<W: Write>(
    w: W,
    customers: &[Customer],
    seed: u64,
    start: NaiveDate,
    day: u32,
) -> Result<SnapshotStats, csv::Error> {
    let mut out = csv::WriterBuilder::new().flexible(true).from_writer(w);
    out.write_record(["customer_id", "name", "email", "region", "signup_date"])?;
    let count = customers.iter().filter(|c| c.exists_on(day)).count();
    let mut r = rng(seed, stream::SNAPSHOT, u64::from(day));
    let short = r.random_range(0..count.max(1));
    let mut bad_date = r.random_range(0..count.max(1));
    if bad_date == short {
        bad_date = (bad_date + 1) % count.max(1);
    }
    let mut id = Vec::with_capacity(20);
    let mut date = Vec::with_capacity(10);
    let mut stats = SnapshotStats::default();
    for (i, c) in customers.iter().filter(|c| c.exists_on(day)).enumerate() {
        id.clear();
        push_int(&mut id, c.id);
        date.clear();
        if i == bad_date {
            date.extend_from_slice(b"2024-02-31");
        } else {
            push_date(&mut date, day_date(start, c.signup_day));
        }
        if i == short {
            out.write_record([&id[..], c.name.as_bytes()])?;
        } else {
            out.write_record([
                &id[..],
                c.name.as_bytes(),
                c.email.as_bytes(),
                REGIONS[c.region].as_bytes(),
                &date[..],
            ])?;
        }
        stats.rows += 1;
    }
    out.flush()?;
    Ok(stats)
}

// ---------------------------------------------------------------- eligibility

/// Which customers can place an order on a given day.
pub(crate) struct Eligibility {
    base_ids: Vec<i64>,
    base_signup: Vec<i64>,
    later: BTreeMap<u32, Vec<i64>>,
}

impl Eligibility {
    /// From the base customers (valid for every day of the initial period).
    pub(crate) fn new(base: &[Customer]) -> Self {
        Eligibility {
            base_ids: base.iter().map(|c| c.id).collect(),
            base_signup: base.iter().map(|c| c.signup_day).collect(),
            later: BTreeMap::new(),
        }
    }

    /// Records the customers existing on a day after the initial period.
    pub(crate) fn record(&mut self, day: u32, customers: &[Customer]) {
        self.later.insert(
            day,
            customers
                .iter()
                .filter(|c| c.exists_on(day))
                .map(|c| c.id)
                .collect(),
        );
    }

    /// The ids of the customers existing on `day`, oldest first.
    pub(crate) fn ids(&self, day: u32) -> &[i64] {
        if let Some(ids) = self.later.get(&day) {
            return ids;
        }
        let n = self.base_signup.partition_point(|s| *s <= i64::from(day));
        &self.base_ids[..n]
    }
}
