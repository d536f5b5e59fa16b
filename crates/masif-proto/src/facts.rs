//! Host facts, sent with every v2 report: the OS, kernel and agent version, whether the host
//! needs a reboot (and which packages asked for it), the packages held by dpkg, and per task
//! the origin of its target version and the other tasks of its own plan (what approving it
//! pulls in). Facts are untrusted input: every text is capped and refused when it holds a
//! control or format (Cf) character, every list is capped, and a fact naming a task the report
//! does not carry is refused.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::tag::{Tag, MAX_TAGS};
use crate::task::{is_format, quote, PackageName, Task, TaskSet, MAX_QUOTE_CHARS};
use crate::wire::{parse_tasks, wire_tasks, WireTask};

/// Most characters of a text fact (OS name, kernel release, agent version, origin): what the
/// database's `VARCHAR(191)` holds.
pub const MAX_FACT_CHARS: usize = 191;
/// Most packages named in `reboot_packages` or in `held`.
pub const MAX_LISTED_PACKAGES: usize = 2000;
/// Most tasks in one task's `needs`.
pub const MAX_NEEDS: usize = 500;

/// A short text fact: 1 to [`MAX_FACT_CHARS`] characters, no control or format characters
/// (no zero-width or bidirectional tricks in what the UI shows).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct FactText(String);

impl FactText {
    pub fn new(value: impl Into<String>) -> Result<Self, String> {
        let value = value.into();
        if value.is_empty() || value.chars().count() > MAX_FACT_CHARS {
            return Err(format!("must be 1 to {MAX_FACT_CHARS} characters"));
        }
        if value.chars().any(is_refused_char) {
            return Err("holds a control or format character".into());
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for FactText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Control characters, and Unicode's format characters (Cf: zero-width joiners, bidirectional
/// overrides, the byte-order mark, …).
fn is_refused_char(c: char) -> bool {
    c.is_control() || is_format(c)
}

/// Where a task's target version comes from, as apt prints it between the version and the
/// architecture: `LABEL:VERSION/SUITE`, several joined by `", "` when the version is in
/// several archives (for example `Debian:12/stable, Debian-Security:12/stable-security`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Origin(FactText);

impl Origin {
    pub fn new(value: impl Into<String>) -> Result<Self, String> {
        FactText::new(value).map(Self)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// Whether the version is a security update: one of its archives has the label
    /// `Debian-Security` or a suite ending in `-security` (Ubuntu's `jammy-security`).
    pub fn is_security(&self) -> bool {
        self.as_str().split(", ").any(|archive| {
            let (label, rest) = archive.split_once(':').unwrap_or(("", archive));
            let suite = rest.rsplit_once('/').map_or(rest, |(_, suite)| suite);
            label == "Debian-Security" || suite.ends_with("-security")
        })
    }
}

/// What the agent knows of one reported task.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskFacts {
    /// Origin of the target version (none for removals, or when apt printed none).
    pub origin: Option<Origin>,
    /// The tasks of other packages in this package's own plan: what must be approved too
    /// before it runs.
    pub needs: TaskSet,
}

impl TaskFacts {
    pub fn is_security(&self) -> bool {
        self.origin.as_ref().is_some_and(Origin::is_security)
    }
}

/// The facts of one host, as of its latest report.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Facts {
    /// `PRETTY_NAME` of os-release.
    pub os: Option<FactText>,
    /// The running kernel's release (`uname -r`).
    pub kernel: Option<FactText>,
    pub agent_version: Option<FactText>,
    /// Whether the reboot-required file exists.
    pub reboot_required: bool,
    /// The packages its `.pkgs` file names.
    pub reboot_packages: BTreeSet<PackageName>,
    /// Packages held by dpkg (`hold` selections): apt never upgrades them.
    pub held: BTreeSet<PackageName>,
    /// Facts of reported tasks; each key is one of the report's tasks.
    pub tasks: BTreeMap<Task, TaskFacts>,
    /// The tags the agent's configuration gives the host (at most [`MAX_TAGS`]).
    pub tags: BTreeSet<Tag>,
}

/// A problem with one fact: the field path and why.
pub(crate) type FactError = (String, String);

impl Facts {
    /// Parses the `facts` object of a report whose tasks are `tasks`.
    pub(crate) fn parse(value: &Value, tasks: &TaskSet) -> Result<Self, FactError> {
        let Value::Object(fields) = value else {
            return Err(("facts".into(), "not a JSON object".into()));
        };
        let at = |name: &str| format!("facts.{name}");
        let text = |name: &str| -> Result<Option<FactText>, FactError> {
            match fields.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => FactText::new(s.as_str())
                    .map(Some)
                    .map_err(|e| (at(name), e)),
                Some(_) => Err((at(name), "not a string".into())),
            }
        };
        let reboot_required = match fields.get("reboot_required") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err((at("reboot_required"), "not true or false".into())),
        };
        let mut facts = Facts {
            os: text("os")?,
            kernel: text("kernel")?,
            agent_version: text("agent_version")?,
            reboot_required,
            reboot_packages: packages(fields, "reboot_packages")?,
            held: packages(fields, "held")?,
            tasks: BTreeMap::new(),
            tags: tags(fields)?,
        };
        match fields.get("tasks") {
            None => {}
            Some(Value::Array(items)) => {
                for (index, item) in items.iter().enumerate() {
                    let (task, task_facts) =
                        parse_task_facts(item, tasks).map_err(|(name, reason)| {
                            (format!("facts.tasks[{index}]{name}"), reason)
                        })?;
                    if facts.tasks.insert(task, task_facts).is_some() {
                        return Err((
                            format!("facts.tasks[{index}]"),
                            "repeats an earlier task".into(),
                        ));
                    }
                }
            }
            Some(_) => return Err((at("tasks"), "not an array".into())),
        }
        Ok(facts)
    }

    /// The wire form, a JSON object.
    pub(crate) fn to_wire(&self) -> Value {
        #[derive(Serialize)]
        struct WireTaskFacts<'a> {
            #[serde(flatten)]
            task: WireTask<'a>,
            #[serde(skip_serializing_if = "Option::is_none")]
            origin: Option<&'a Origin>,
            #[serde(skip_serializing_if = "Vec::is_empty")]
            needs: Vec<WireTask<'a>>,
        }
        #[derive(Serialize)]
        struct Wire<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            os: Option<&'a FactText>,
            #[serde(skip_serializing_if = "Option::is_none")]
            kernel: Option<&'a FactText>,
            #[serde(skip_serializing_if = "Option::is_none")]
            agent_version: Option<&'a FactText>,
            reboot_required: bool,
            reboot_packages: &'a BTreeSet<PackageName>,
            held: &'a BTreeSet<PackageName>,
            tasks: Vec<WireTaskFacts<'a>>,
            // Omitted when empty: facts without tags keep their canonical form (and digest).
            #[serde(skip_serializing_if = "BTreeSet::is_empty")]
            tags: &'a BTreeSet<Tag>,
        }
        let tasks = self
            .tasks
            .iter()
            .map(|(task, f)| WireTaskFacts {
                task: wire_tasks([task]).remove(0),
                origin: f.origin.as_ref(),
                needs: wire_tasks(&f.needs),
            })
            .collect();
        serde_json::to_value(Wire {
            os: self.os.as_ref(),
            kernel: self.kernel.as_ref(),
            agent_version: self.agent_version.as_ref(),
            reboot_required: self.reboot_required,
            reboot_packages: &self.reboot_packages,
            held: &self.held,
            tasks,
            tags: &self.tags,
        })
        .expect("serialising plain values cannot fail")
    }

    /// A canonical rendering (sorted sets, fixed field order): equal facts render equally,
    /// so a digest of it tells whether stored facts are still current.
    pub fn canonical(&self) -> String {
        self.to_wire().to_string()
    }
}

fn packages(fields: &Map<String, Value>, name: &str) -> Result<BTreeSet<PackageName>, FactError> {
    let path = format!("facts.{name}");
    let items = match fields.get(name) {
        None => return Ok(BTreeSet::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err((path, "not an array".into())),
    };
    if items.len() > MAX_LISTED_PACKAGES {
        return Err((path, format!("more than {MAX_LISTED_PACKAGES} packages")));
    }
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let at = || format!("{path}[{index}]");
            let name = item.as_str().ok_or_else(|| (at(), "not a string".into()))?;
            if name.chars().any(is_refused_char) {
                return Err((at(), "holds a control or format character".into()));
            }
            PackageName::new(name).map_err(|e| (at(), e.to_string()))
        })
        .collect()
}

fn tags(fields: &Map<String, Value>) -> Result<BTreeSet<Tag>, FactError> {
    let items = match fields.get("tags") {
        None | Some(Value::Null) => return Ok(BTreeSet::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(("facts.tags".into(), "not an array".into())),
    };
    if items.len() > MAX_TAGS {
        return Err(("facts.tags".into(), format!("more than {MAX_TAGS} tags")));
    }
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let at = || format!("facts.tags[{index}]");
            let name = item.as_str().ok_or_else(|| (at(), "not a string".into()))?;
            Tag::new(name).map_err(|e| (at(), e))
        })
        .collect()
}

/// One entry of `facts.tasks`: a task's fields, `origin` and `needs`. Errors name the field
/// after the entry's index (`.origin`, `.needs`, or `` for the task itself).
fn parse_task_facts(item: &Value, tasks: &TaskSet) -> Result<(Task, TaskFacts), FactError> {
    let Value::Object(fields) = item else {
        return Err((String::new(), "not a JSON object".into()));
    };
    let task = parse_tasks(&Value::Array(vec![item.clone()]))
        .map_err(|e| (String::new(), e.to_string().replacen("task 0: ", "", 1)))?
        .into_iter()
        .next()
        .ok_or_else(|| (String::new(), "not a task".into()))?;
    if !tasks.contains(&task) {
        return Err((
            String::new(),
            format!(
                "names {} which is not in tasks",
                quote(task.package().as_str(), MAX_QUOTE_CHARS)
            ),
        ));
    }
    let origin = match fields.get("origin") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(Origin::new(s.as_str()).map_err(|e| (".origin".into(), e))?),
        Some(_) => return Err((".origin".into(), "not a string".into())),
    };
    let needs = match fields.get("needs") {
        None => TaskSet::new(),
        Some(Value::Array(items)) if items.len() > MAX_NEEDS => {
            return Err((".needs".into(), format!("more than {MAX_NEEDS} tasks")));
        }
        Some(v) => parse_tasks(v).map_err(|e| (".needs".into(), e.to_string()))?,
    };
    Ok((task, TaskFacts { origin, needs }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Action, Version};

    fn task(package: &str, action: Action, from: Option<&str>, to: Option<&str>) -> Task {
        Task::new(
            PackageName::new(package).unwrap(),
            action,
            from.map(|v| Version::new(v).unwrap()),
            to.map(|v| Version::new(v).unwrap()),
        )
        .unwrap()
    }

    fn sample() -> (TaskSet, Facts) {
        let beta = task("beta", Action::Update, Some("1.0"), Some("2.0"));
        let gamma = task("gamma", Action::Install, None, Some("1.0"));
        let tasks: TaskSet = [beta.clone(), gamma.clone()].into();
        let facts = Facts {
            os: Some(FactText::new("Debian GNU/Linux 12 (bookworm)").unwrap()),
            kernel: Some(FactText::new("6.1.0-28-amd64").unwrap()),
            agent_version: Some(FactText::new("0.1.0").unwrap()),
            reboot_required: true,
            reboot_packages: [PackageName::new("linux-image-6.1.0-28-amd64").unwrap()].into(),
            held: [PackageName::new("delta").unwrap()].into(),
            tasks: [(
                beta,
                TaskFacts {
                    origin: Some(Origin::new("Debian-Security:12/stable-security").unwrap()),
                    needs: [gamma].into(),
                },
            )]
            .into(),
            tags: [Tag::new("web").unwrap(), Tag::new("prod").unwrap()].into(),
        };
        (tasks, facts)
    }

    #[test]
    fn facts_round_trip_and_render_canonically() {
        let (tasks, facts) = sample();
        let parsed = Facts::parse(&facts.to_wire(), &tasks).unwrap();
        assert_eq!(parsed, facts);
        assert_eq!(parsed.canonical(), facts.canonical());
        assert_eq!(
            Facts::parse(&serde_json::json!({}), &tasks).unwrap(),
            Facts::default()
        );
    }

    #[test]
    fn security_is_told_by_label_or_suite() {
        let security = [
            "Debian-Security:12/stable-security",
            "Debian-Security:12/bookworm-security",
            "Ubuntu:22.04/jammy-security",
            "Debian:12/stable, Debian-Security:12/stable-security",
            "Debian-Security:12/stable",
            "stable-security",
        ];
        let plain = [
            "Debian:12/stable",
            "Ubuntu:22.04/jammy-updates",
            "Debian:12/stable-updates",
            "security:1/stable",
            "Debian:12/stable-security-not",
        ];
        for o in security {
            assert!(Origin::new(o).unwrap().is_security(), "{o}");
        }
        for o in plain {
            assert!(!Origin::new(o).unwrap().is_security(), "{o}");
        }
    }

    #[test]
    fn bad_facts_name_the_field_and_the_reason() {
        let (tasks, facts) = sample();
        let good = facts.to_wire();
        let with = |key: &str, value: Value| {
            let mut f = good.clone();
            f[key] = value;
            f
        };
        let mut stray = good.clone();
        stray["tasks"][0]["package"] = "omega".into();
        let mut bad_origin = good.clone();
        bad_origin["tasks"][0]["origin"] = "Debian\u{200b}:12/stable".into();
        let mut many_needs = good.clone();
        many_needs["tasks"][0]["needs"] = Value::Array(vec![
            serde_json::json!({"package": "x", "action": "remove"});
            MAX_NEEDS + 1
        ]);
        let mut twice = good.clone();
        let first = twice["tasks"][0].clone();
        twice["tasks"].as_array_mut().unwrap().push(first);
        let cases = [
            (
                with("os", "x".repeat(MAX_FACT_CHARS + 1).into()),
                "facts.os",
            ),
            (with("os", "".into()), "facts.os"),
            (with("kernel", "6.1\u{1b}[31m".into()), "facts.kernel"),
            (
                with("agent_version", "0.1\u{202e}".into()),
                "facts.agent_version",
            ),
            (with("agent_version", 1.into()), "facts.agent_version"),
            (
                with("reboot_required", "yes".into()),
                "facts.reboot_required",
            ),
            (with("held", "delta".into()), "facts.held"),
            (
                with("held", serde_json::json!(["de\u{feff}lta"])),
                "facts.held[0]",
            ),
            (with("held", serde_json::json!([""])), "facts.held[0]"),
            (
                with(
                    "reboot_packages",
                    Value::Array(vec!["x".into(); MAX_LISTED_PACKAGES + 1]),
                ),
                "facts.reboot_packages",
            ),
            (with("tasks", serde_json::json!({})), "facts.tasks"),
            (with("tags", "web".into()), "facts.tags"),
            (
                with("tags", serde_json::json!(["web", "-x"])),
                "facts.tags[1]",
            ),
            (with("tags", serde_json::json!([7])), "facts.tags[0]"),
            (
                with("tags", Value::Array(vec!["t".into(); MAX_TAGS + 1])),
                "facts.tags",
            ),
            (stray, "facts.tasks[0]"),
            (bad_origin, "facts.tasks[0].origin"),
            (many_needs, "facts.tasks[0].needs"),
            (twice, "facts.tasks[1]"),
            (serde_json::json!([]), "facts"),
        ];
        for (value, path) in cases {
            let (field, reason) = Facts::parse(&value, &tasks).unwrap_err();
            assert_eq!(field, path, "{reason}");
            assert!(!reason.is_empty());
        }
    }
}
