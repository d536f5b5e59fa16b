//! The back-end independent part of counting pending tasks by action: every action of
//! [`Action::ALL`] once, in its order, zero where no row has it; rows whose action is NULL or
//! unknown (the original schema allows NULL) are not counted.

use masif_proto::Action;

/// `rows` of (action as stored, count) as one count per action.
pub(crate) fn by_action(
    rows: impl IntoIterator<Item = (Option<String>, u64)>,
) -> Vec<(Action, u64)> {
    let mut counts: Vec<(Action, u64)> = Action::ALL.iter().map(|&a| (a, 0)).collect();
    for (action, n) in rows {
        let Some(action) = action.and_then(|a| a.parse::<Action>().ok()) else {
            continue;
        };
        if let Some(slot) = counts.iter_mut().find(|(a, _)| *a == action) {
            slot.1 += n;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_is_listed_once_and_odd_rows_are_skipped() {
        let rows = [
            (Some("remove".to_owned()), 2),
            (None, 9),
            (Some("bogus".to_owned()), 4),
            (Some("install".to_owned()), 3),
        ];
        assert_eq!(
            by_action(rows),
            vec![
                (Action::Install, 3),
                (Action::Update, 0),
                (Action::Configure, 0),
                (Action::Remove, 2),
                (Action::Purge, 0),
            ]
        );
    }
}
