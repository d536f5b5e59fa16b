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
}
