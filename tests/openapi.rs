//! `/openapi.json`: a valid OpenAPI 3 document (checked by a real validator,
//! tests/browser/openapi.mjs) that lists every route the process serves, and only those. Every
//! documented operation answers (never the router's `no_route` 404), and the source registers
//! routes only through the documented `routes!` registrations, so no undocumented route exists.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Sends `method path` with no body and returns (status, body).
fn request(port: u16, method: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    (status, text)
}

/// The path with each `{param}` replaced by the parameter's example.
fn concrete(path: &str, op: &Value) -> String {
    let mut p = path.to_string();
    for param in op["parameters"].as_array().into_iter().flatten() {
        if param["in"] == "path" {
            let name = param["name"].as_str().unwrap();
            let example = param["example"]
                .as_str()
                .unwrap_or_else(|| panic!("{path}: path parameter {name} has no example"));
            p = p.replace(&format!("{{{name}}}"), example);
        }
    }
    p
}

/// What the schema check cannot see: every `{param}` of a path template is declared as a
/// required path parameter and every declared path parameter is in the template; operationIds
/// are unique; every `$ref` resolves.
fn check_semantics(doc: &Value) {
    let mut ids = std::collections::HashSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let in_template: std::collections::BTreeSet<&str> = path
            .split('{')
            .skip(1)
            .map(|s| s.split('}').next().unwrap())
            .collect();
        for (method, op) in item.as_object().unwrap() {
            let declared: std::collections::BTreeSet<&str> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .inspect(|p| assert_eq!(p["required"], true, "{method} {path}: {p}"))
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            assert_eq!(declared, in_template, "{method} {path}: path parameters");
            let id = op["operationId"].as_str().unwrap_or_else(|| {
                panic!("{method} {path} has no operationId");
            });
            assert!(ids.insert(id.to_string()), "operationId {id} twice");
        }
    }
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r);
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(doc, &mut all);
    for r in all {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("external $ref {r}"));
        assert!(doc.pointer(pointer).is_some(), "$ref {r} does not resolve");
    }
}

/// Fetches a node's document, validates it (schema and semantics) and checks that every
/// documented operation is served and answers with a documented status. Returns the document.
fn served_document(port: u16, dir: &Path) -> Value {
    let (status, text) = request(port, "GET", "/openapi.json");
    assert_eq!(status, 200);
    let body = text.split_once("\r\n\r\n").unwrap().1;
    let doc: Value = serde_json::from_str(body).unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );

    // A real validator: the OpenAPI schema, every $ref resolved.
    let file = dir.join(format!("openapi-{port}.json"));
    std::fs::write(&file, body).unwrap();
    let out = Command::new("node")
        .arg(Path::new(ROOT).join("tests/browser/openapi.mjs"))
        .arg(&file)
        .current_dir(ROOT)
        .output()
        .expect("node (Node.js) must be installed; scripts/install-browser.sh");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    check_semantics(&doc);

    // Every documented operation is served (an unknown route answers `no_route`).
    let (status, text) = request(port, "GET", "/no/such/route");
    assert!(status == 404 && text.contains("no_route"), "{text}");
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let (status, text) = request(port, &method.to_uppercase(), &concrete(path, op));
            assert!(
                !text.contains("\"no_route\""),
                "{method} {path} is documented but not served: {status}"
            );
            let documented = op["responses"].as_object().unwrap();
            assert!(
                documented.contains_key(&status.to_string()),
                "{method} {path} answered {status}, which the document does not list"
            );
        }
    }
    doc
}

#[test]
fn openapi_is_valid_and_lists_exactly_the_served_routes() {
    let broker = Broker::start();
    let config = Path::new(ROOT).join("channels.toml");
    let dir = tempfile::tempdir().unwrap();
    let _feed = spawn_pricefeed(&broker, &config, &["simulate", "--rate", "20"], dir.path());
    let node = spawn_pricefeed(&broker, &config, &["run", "--demo"], dir.path());
    // A transform worker alone serves the operations routes only, and says so.
    let worker = spawn_pricefeed(&broker, &config, &["transform"], dir.path());
    wait_ready(&node, Duration::from_secs(90));
    wait_ready(&worker, Duration::from_secs(90));

    let doc = served_document(node.http_port, dir.path());
    // Every route a user of the service would look for is documented…
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/ws", "get"),
        ("/ws/sub/{topic}", "get"),
        ("/sse/{topic}", "get"),
        ("/audit", "get"),
        ("/stats", "get"),
        ("/publish", "post"),
        ("/demo/session", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
        ("/", "get"),
        ("/docs", "get"),
        ("/dashboard", "get"),
        ("/client.js", "get"),
        ("/ui/{file}", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} is not in /openapi.json"
        );
    }
    let worker_doc = served_document(worker.http_port, dir.path());
    let mut worker_paths: Vec<&String> = worker_doc["paths"].as_object().unwrap().keys().collect();
    worker_paths.sort();
    assert_eq!(
        worker_paths,
        ["/healthz", "/metrics", "/openapi.json", "/readyz"],
        "a transform worker's routes"
    );
    let (status, _) = request(worker.http_port, "GET", "/ws");
    assert_eq!(status, 404, "a transform worker serves no WebSocket");

    // The only way to add a route is a documented registration (`routes!` of a handler with
    // `#[utoipa::path]`): plain axum routing is not used anywhere in src/.
    let mut stack = vec![Path::new(ROOT).join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let src = std::fs::read_to_string(&path).unwrap();
                for banned in [
                    ".route(",
                    ".route_service(",
                    ".nest(",
                    ".nest_service(",
                    ".fallback_service(",
                ] {
                    assert!(
                        !src.contains(banned),
                        "{}: {banned} registers a route outside /openapi.json",
                        path.display()
                    );
                }
            }
        }
    }
}
