//! Submitted forms: size-limited `application/x-www-form-urlencoded` bodies as ordered pairs
//! (checkboxes repeat a name), and the encoding of a pending-page checkbox value.

use masif_proto::{Action, PackageName, Version};
use masif_store::TaskKey;
use warp::{Filter, Rejection};

use crate::pages::reject::BadRequest;

/// Largest form body accepted (bytes): room for a few thousand ticked rows.
pub(crate) const MAX_FORM_BYTES: u64 = 1024 * 1024;

/// Most values of one repeated field (ticked rows, ticked agents) in one form.
pub(crate) const MAX_REPEATED: usize = 10_000;

/// A decoded form, in submission order.
pub(crate) type Form = Vec<(String, String)>;

/// The form body of a POST, at most [`MAX_FORM_BYTES`].
pub(crate) fn body() -> impl Filter<Extract = (Form,), Error = Rejection> + Clone {
    warp::body::content_length_limit(MAX_FORM_BYTES).and(warp::body::form::<Form>())
}

/// The first value of `name`.
pub(crate) fn field<'a>(form: &'a Form, name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Every value of `name`, refusing more than [`MAX_REPEATED`].
pub(crate) fn fields<'a>(form: &'a Form, name: &str) -> Result<Vec<&'a str>, Rejection> {
    let all: Vec<&str> = form
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect();
    if all.len() > MAX_REPEATED {
        return Err(BadRequest::reject(format!(
            "more than {MAX_REPEATED} values of {name}"
        )));
    }
    Ok(all)
}

/// The checkbox value of a (package, action, target version): a JSON array
/// `[package, action, to_version or null]`.
pub(crate) fn encode_key(key: &TaskKey) -> String {
    serde_json::to_string(&(
        key.package.as_str(),
        key.action.as_str(),
        key.to_version.as_ref().map(Version::as_str),
    ))
    .expect("strings serialize")
}

/// Parses a checkbox value made by [`encode_key`], validating every part.
pub(crate) fn decode_key(value: &str) -> Result<TaskKey, String> {
    let (package, action, to): (String, String, Option<String>) =
        serde_json::from_str(value).map_err(|_| "malformed task selection".to_owned())?;
    let package = PackageName::new(package).map_err(|e| format!("task selection: {e}"))?;
    let action: Action = action
        .parse()
        .map_err(|_| "task selection: unknown action".to_owned())?;
    let to_version = to
        .map(Version::new)
        .transpose()
        .map_err(|e| format!("task selection: {e}"))?;
    Ok(TaskKey {
        package,
        action,
        to_version,
    })
}

/// Every `key` field of a form, decoded; an empty selection is an error.
pub(crate) fn keys(form: &Form) -> Result<Vec<TaskKey>, Rejection> {
    let keys = fields(form, "key")?
        .into_iter()
        .map(decode_key)
        .collect::<Result<Vec<_>, _>>()
        .map_err(BadRequest::reject)?;
    if keys.is_empty() {
        return Err(BadRequest::reject(
            "no task selected: tick at least one row".to_owned(),
        ));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let keys = [
            TaskKey {
                package: PackageName::new("<script>alert(1)</script>").unwrap(),
                action: Action::Install,
                to_version: Some(Version::new("1:2.0\"'").unwrap()),
            },
            TaskKey {
                package: PackageName::new("perl").unwrap(),
                action: Action::Remove,
                to_version: None,
            },
        ];
        for k in keys {
            assert_eq!(decode_key(&encode_key(&k)).unwrap(), k);
        }
    }

    #[test]
    fn hostile_keys_are_refused() {
        let long = format!("[\"{}\",\"update\",\"1\"]", "a".repeat(192));
        for bad in [
            "",
            "perl",
            "[]",
            "[\"perl\"]",
            "[\"perl\",\"upgrade\",\"1\"]",
            "[\"\",\"update\",\"1\"]",
            "[\"perl\",\"update\",\"\"]",
            "[\"pe\\nrl\",\"update\",\"1\"]",
            "[1,2,3]",
            "{\"package\":\"perl\"}",
            &long,
        ] {
            assert!(decode_key(bad).is_err(), "{bad:?}");
        }
    }

    /// Percent-encodes every byte but the unreserved ones, as a browser's form would.
    fn percent(s: &str) -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }

    fn decode(body: Vec<u8>) -> Result<Form, Rejection> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(
            warp::test::request()
                .method("POST")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .filter(&super::body()),
        )
    }

    // Bounded for CI (256 cases; `PROPTEST_CASES=100000` for a longer run by hand).
    proptest::proptest! {
        #[test]
        fn raw_bytes_decode_or_are_refused_without_a_panic(
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
        ) {
            if let Ok(form) = decode(body) {
                let _ = keys(&form);
                let _ = field(&form, "csrf");
            }
        }

        #[test]
        fn forms_round_trip(
            pairs in proptest::collection::vec((".{0,20}", ".{0,40}"), 0..8),
        ) {
            let body = pairs
                .iter()
                .map(|(k, v)| format!("{}={}", percent(k), percent(v)))
                .collect::<Vec<_>>()
                .join("&");
            let form = decode(body.into_bytes()).expect("a well-formed form decodes");
            // A bare `=` is the pair ("", ""), so even empty names and values survive.
            proptest::prop_assert_eq!(form, pairs);
        }

        #[test]
        fn checkbox_values_decode_or_are_refused_clearly(value in ".{0,300}") {
            match decode_key(&value) {
                Ok(key) => proptest::prop_assert_eq!(decode_key(&encode_key(&key)).unwrap(), key),
                Err(e) => proptest::prop_assert!(
                    e == "malformed task selection" || e.starts_with("task selection: "),
                    "{}", e
                ),
            }
        }

        #[test]
        fn valid_keys_round_trip(
            package in "[^\\x00-\\x1f]{1,60}",
            version in proptest::option::of("[^\\x00-\\x1f]{1,60}"),
            remove in proptest::bool::ANY,
        ) {
            let Ok(package) = PackageName::new(package) else { return Ok(()) };
            let Ok(to_version) = version.map(Version::new).transpose() else { return Ok(()) };
            let key = TaskKey {
                package,
                action: if remove { Action::Remove } else { Action::Install },
                to_version,
            };
            proptest::prop_assert_eq!(decode_key(&encode_key(&key)).unwrap(), key);
        }
    }
}
