//! The web dashboard: a page and its scripts, embedded in the binary (it
//! works with no internet), talking to the API with the token the user gives.

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::Embed;

use crate::AppState;

/// The dashboard's files (`assets/dashboard/`).
#[derive(Embed)]
#[folder = "assets/dashboard/"]
struct Assets;

/// `/` (the page) and `/assets/{file}`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/assets/{*file}", get(asset))
}

async fn index() -> Response {
    serve("index.html")
}

async fn asset(Path(file): Path<String>) -> Response {
    serve(&file)
}

fn content_type(file: &str) -> &'static str {
    match file.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

fn serve(file: &str) -> Response {
    match Assets::get(file) {
        Some(f) => (
            [
                (header::CONTENT_TYPE, content_type(file)),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            f.data.into_owned(),
        )
            .into_response(),
        None => crate::error(StatusCode::NOT_FOUND, &format!("no file `{file}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_assets_are_embedded() {
        let page = Assets::get("index.html").expect("index.html is embedded");
        let text = String::from_utf8_lossy(&page.data).to_string();
        for asset in ["/assets/app.js", "/assets/style.css"] {
            assert!(text.contains(asset), "index.html does not load {asset}");
            let name = asset.trim_start_matches("/assets/");
            assert!(Assets::get(name).is_some(), "{name} is not embedded");
        }
        // Nothing is fetched from the internet.
        assert!(!text.contains("http://") && !text.contains("https://"));
    }
}
