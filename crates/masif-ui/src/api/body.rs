//! JSON request bodies: at most 64 KiB, `Content-Type: application/json`, parsed into a
//! `serde_json::Value` for the handlers to read field by field (so errors name the field).

use serde_json::Value;
use warp::http::StatusCode;
use warp::{Filter, Rejection};

use super::error::ApiError;

/// Largest body accepted (bytes).
pub(crate) const MAX_BODY_BYTES: u64 = 64 * 1024;

/// The JSON body of a write.
pub(crate) fn json_body() -> impl Filter<Extract = (Value,), Error = Rejection> + Clone {
    warp::header::optional::<String>("content-type")
        .and(warp::body::content_length_limit(MAX_BODY_BYTES))
        .and(warp::body::bytes())
        .and_then(
            |content_type: Option<String>, bytes: bytes::Bytes| async move {
                let is_json = content_type.as_deref().is_some_and(|t| {
                    t.split(';').next().is_some_and(|essence| {
                        essence.trim().eq_ignore_ascii_case("application/json")
                    })
                });
                if !is_json {
                    return Err(ApiError::reject(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        "the body must be application/json",
                    ));
                }
                serde_json::from_slice::<Value>(&bytes)
                    .map_err(|e| ApiError::bad(format!("body is not valid JSON: {e}")))
            },
        )
}

/// A field of a JSON object, read with its path for error messages (`tasks[2].package`).
pub(crate) struct Field<'a> {
    pub path: String,
    pub value: Option<&'a Value>,
}

impl<'a> Field<'a> {
    /// The object at `path`, refusing fields other than `allowed`.
    pub(crate) fn object(
        value: &'a Value,
        path: &str,
        allowed: &[&str],
    ) -> Result<&'a serde_json::Map<String, Value>, Rejection> {
        let what = if path.is_empty() { "body" } else { path };
        let map = value
            .as_object()
            .ok_or_else(|| ApiError::bad(format!("{what} must be an object")))?;
        if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            let shown: String = unknown.chars().take(40).collect();
            return Err(ApiError::bad(format!("{what}: unknown field {shown:?}")));
        }
        Ok(map)
    }

    pub(crate) fn of(map: &'a serde_json::Map<String, Value>, parent: &str, name: &str) -> Self {
        Self {
            path: if parent.is_empty() {
                name.to_owned()
            } else {
                format!("{parent}.{name}")
            },
            value: map.get(name),
        }
    }

    /// A string that must be there.
    pub(crate) fn string(&self) -> Result<&'a str, Rejection> {
        match self.value {
            Some(Value::String(s)) => Ok(s),
            None => Err(ApiError::bad(format!("{} is missing", self.path))),
            Some(_) => Err(ApiError::bad(format!("{} must be a string", self.path))),
        }
    }

    /// A string or null; `required` says whether the field may be left out.
    pub(crate) fn nullable_string(&self, required: bool) -> Result<Option<&'a str>, Rejection> {
        match self.value {
            Some(Value::String(s)) => Ok(Some(s)),
            Some(Value::Null) => Ok(None),
            None if !required => Ok(None),
            None => Err(ApiError::bad(format!(
                "{} is missing (null for none)",
                self.path
            ))),
            Some(_) => Err(ApiError::bad(format!(
                "{} must be a string or null",
                self.path
            ))),
        }
    }

    /// An array of at most `max` elements (none if left out).
    pub(crate) fn array(&self, max: usize) -> Result<Option<&'a Vec<Value>>, Rejection> {
        match self.value {
            None => Ok(None),
            Some(Value::Array(a)) if a.len() <= max => Ok(Some(a)),
            Some(Value::Array(_)) => Err(ApiError::bad(format!(
                "{} has more than {max} elements",
                self.path
            ))),
            Some(_) => Err(ApiError::bad(format!("{} must be an array", self.path))),
        }
    }
}
