//! The shipped Grafana dashboard and Prometheus alert rules only name
//! metrics that a running server exposes.

use std::collections::BTreeSet;

use crate::helpers::spawn_app;

/// Every `rampart_...` name in a text.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("rampart_") {
        let tail = &rest[start..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

#[tokio::test]
async fn dashboards_and_alerts_name_only_metrics_that_exist() {
    let root = env!("CARGO_MANIFEST_DIR");
    let dashboard = std::fs::read_to_string(format!("{root}/deploy/grafana/rampart.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    assert!(parsed["panels"].as_array().is_some_and(|panels| !panels.is_empty()));
    let alerts = std::fs::read_to_string(format!("{root}/deploy/prometheus/alerts.yml")).unwrap();
    assert!(alerts.contains("groups:") && alerts.contains("- alert: RampartBruteForce"));

    let app = spawn_app().await;
    app.get("/health").await;
    let scrape =
        app.client.get(format!("http://{}/metrics", app.admin_address)).send().await.unwrap().text().await.unwrap();
    let exposed: BTreeSet<String> = scrape
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect();
    let wanted: BTreeSet<String> = metric_names(&dashboard).into_iter().chain(metric_names(&alerts)).collect();
    assert!(wanted.len() >= 10, "{wanted:?}");
    let missing: Vec<&String> = wanted.difference(&exposed).collect();
    assert!(missing.is_empty(), "named but not exposed: {missing:?}\n{scrape}");
}
