//! Stored text back into checked protocol types, alike for both back ends: a row another tool
//! wrote may hold anything, so the conversion says what is wrong instead of trusting it.

use masif_proto::{Action, PackageName, Task, TaskError, Version};

/// The task that a stored row's package, action and versions describe, or what is wrong with
/// them.
pub(crate) fn task_from_text(
    package: Option<String>,
    action: Option<&str>,
    from_version: Option<String>,
    to_version: Option<String>,
) -> Result<Task, String> {
    let package = PackageName::new(package.unwrap_or_default()).map_err(|e| e.to_string())?;
    let action: Action = action
        .ok_or("no action")?
        .parse()
        .map_err(|e: TaskError| e.to_string())?;
    let version = |v: Option<String>| v.map(Version::new).transpose().map_err(|e| e.to_string());
    Task::new(
        package,
        action,
        version(from_version)?,
        version(to_version)?,
    )
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    #[test]
    fn valid_rows_become_tasks() {
        let task = task_from_text(some("perl"), Some("update"), some("5.1"), some("5.2")).unwrap();
        assert_eq!(task.package().as_str(), "perl");
        assert_eq!(task.action(), Action::Update);
    }

    #[test]
    fn broken_rows_say_what_is_wrong() {
        assert!(task_from_text(None, Some("install"), None, some("1")).is_err());
        assert_eq!(
            task_from_text(some("perl"), None, None, some("1")).unwrap_err(),
            "no action"
        );
        assert!(task_from_text(some("perl"), Some("upgrade"), None, some("1")).is_err());
        assert!(task_from_text(some("perl"), Some("update"), None, None).is_err());
        assert!(task_from_text(some("perl"), Some("install"), None, some("1\n2")).is_err());
    }
}
