//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 document of the API, kept as a JSON file
//! (`openapi.json`) that `masif-xtask api-doc` renders into `docs/api.md`.

use warp::http::StatusCode;
use warp::reply::Response;

/// The OpenAPI 3.1 document of the API, as served.
pub const OPENAPI_DOCUMENT: &str = include_str!("openapi.json");

pub(super) fn document() -> Response {
    let mut r = Response::new(OPENAPI_DOCUMENT.into());
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("application/json"),
    );
    r
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    #[test]
    fn the_document_lists_exactly_the_served_routes() {
        let doc: Value = serde_json::from_str(super::OPENAPI_DOCUMENT).expect("valid JSON");
        assert_eq!(doc["openapi"].as_str().unwrap(), "3.1.0");
        let mut listed = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if ["get", "post", "put", "patch", "delete", "head", "options"]
                    .contains(&method.as_str())
                {
                    listed.insert((method.clone(), path.clone()));
                }
            }
        }
        let served: BTreeSet<(String, String)> = super::super::ROUTES
            .iter()
            .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
            .collect();
        assert_eq!(listed, served);
    }

    /// Every `$ref` points at a schema, parameter or response the document defines.
    #[test]
    fn every_reference_resolves() {
        fn walk(v: &Value, doc: &Value, refs: &mut usize) {
            match v {
                Value::Object(map) => {
                    if let Some(Value::String(r)) = map.get("$ref") {
                        let pointer = r.strip_prefix('#').expect("local reference");
                        assert!(doc.pointer(pointer).is_some(), "dangling {r}");
                        *refs += 1;
                    }
                    map.values().for_each(|v| walk(v, doc, refs));
                }
                Value::Array(a) => a.iter().for_each(|v| walk(v, doc, refs)),
                _ => {}
            }
        }
        let doc: Value = serde_json::from_str(super::OPENAPI_DOCUMENT).unwrap();
        let mut refs = 0;
        walk(&doc, &doc, &mut refs);
        assert!(refs > 10);
    }
}
