//! Tests of the window model: the JSON form and its errors, open and next-open times, and
//! daylight-saving changes moving weekly windows with the local clock.

use serde_json::json;

use super::*;

fn at(rfc3339: &str) -> i64 {
    rfc3339.parse::<Timestamp>().unwrap().as_second()
}

fn windows(value: Value) -> Vec<Window> {
    Window::parse_list(&value, "windows").unwrap()
}

#[test]
fn windows_round_trip_through_their_json_form() {
    let list = json!([
        {"days": ["mon", "wed"], "start": "22:00", "end": "24:00", "time_zone": "Europe/Berlin"},
        {"from": "2026-12-24T18:00:00Z", "to": "2026-12-24T20:00:00Z"},
    ]);
    let parsed = windows(list.clone());
    let rendered: Vec<Value> = parsed.iter().map(Window::to_json).collect();
    assert_eq!(Value::Array(rendered.clone()), list);
    assert_eq!(windows(Value::Array(rendered)), parsed);
    // Offsets other than Z are read, and written back in UTC.
    let once =
        windows(json!([{"from": "2026-12-24T19:00:00+01:00", "to": "2026-12-24T21:00:00+01:00"}]));
    assert_eq!(once[0].to_json()["from"], "2026-12-24T18:00:00Z");
}

#[test]
fn bad_windows_name_the_field() {
    let weekly = |key: &str, value: Value| {
        let mut w = json!({"days": ["mon"], "start": "01:00", "end": "02:00", "time_zone": "UTC"});
        w[key] = value;
        json!([{"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"}, w])
    };
    let cases = [
        (
            weekly("time_zone", "Mars/Olympus_Mons".into()),
            "windows[1].time_zone",
            "unknown time zone",
        ),
        (
            weekly("time_zone", "../../etc/passwd".into()),
            "windows[1].time_zone",
            "unknown time zone",
        ),
        (
            weekly("end", "00:30".into()),
            "windows[1].end",
            "after start",
        ),
        (
            weekly("end", "01:00".into()),
            "windows[1].end",
            "after start",
        ),
        (weekly("start", "24:00".into()), "windows[1].start", "HH:MM"),
        (weekly("start", "7:00".into()), "windows[1].start", "HH:MM"),
        (weekly("end", "23:60".into()), "windows[1].end", "HH:MM"),
        (
            weekly("days", json!(["mon", "fri2"])),
            "windows[1].days[1]",
            "not a day",
        ),
        (
            weekly("days", json!(["mon", "mon"])),
            "windows[1].days[1]",
            "repeats",
        ),
        (weekly("days", json!([])), "windows[1].days", "1 to 7"),
        (
            weekly("days", "mon".into()),
            "windows[1].days",
            "not an array",
        ),
        (
            weekly("colour", "red".into()),
            "windows[1].colour",
            "not a field",
        ),
        (
            json!([{"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}]),
            "windows[0].to",
            "after from",
        ),
        (
            json!([{"from": "tomorrow", "to": "2026-01-01T00:00:00Z"}]),
            "windows[0].from",
            "RFC 3339",
        ),
        (
            json!([{"from": "2026-01-01T00:00:00Z"}]),
            "windows[0].to",
            "missing",
        ),
        (json!([{}]), "windows[0]", "needs days"),
        (json!([7]), "windows[0]", "not a JSON object"),
        (json!({}), "windows", "not an array"),
        (
            Value::Array(vec![
                json!({"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"});
                MAX_WINDOWS + 1
            ]),
            "windows",
            "more than",
        ),
    ];
    for (value, field, reason) in cases {
        let e = Window::parse_list(&value, "windows").unwrap_err();
        assert_eq!(e.field, field, "{e}");
        assert!(e.reason.contains(reason), "{e}");
        assert!(e.to_string().len() < 200, "{e}");
    }
}

#[test]
fn a_weekly_window_opens_on_its_days_in_its_zone() {
    // Tuesdays 22:00–24:00 in Berlin (UTC+1 in winter): 21:00–23:00 UTC.
    let w = windows(
        json!([{"days": ["tue"], "start": "22:00", "end": "24:00", "time_zone": "Europe/Berlin"}]),
    );
    let monday_noon = at("2026-12-07T12:00:00Z");
    assert!(!open_at(&w, monday_noon));
    assert_eq!(next_open(&w, monday_noon), Some(at("2026-12-08T21:00:00Z")));
    let inside = at("2026-12-08T22:59:59Z");
    assert!(open_at(&w, inside));
    assert_eq!(next_open(&w, inside), Some(inside));
    // Closed at its end; the next opening is a week later.
    let end = at("2026-12-08T23:00:00Z");
    assert!(!open_at(&w, end));
    assert_eq!(next_open(&w, end), Some(at("2026-12-15T21:00:00Z")));
}

#[test]
fn daylight_saving_moves_a_weekly_window_with_the_local_clock() {
    // Sundays 01:00–05:00 in Berlin. On 2027-03-28 clocks go from 02:00 to 03:00 (CET → CEST).
    let w = windows(
        json!([{"days": ["sun"], "start": "01:00", "end": "05:00", "time_zone": "Europe/Berlin"}]),
    );
    // The Sunday before: 00:00–04:00 UTC.
    assert_eq!(
        next_open(&w, at("2027-03-20T12:00:00Z")),
        Some(at("2027-03-21T00:00:00Z"))
    );
    assert!(open_at(&w, at("2027-03-21T03:59:00Z")));
    // DST Sunday: opens 01:00 CET = 00:00 UTC, closes 05:00 CEST = 03:00 UTC (three hours).
    assert_eq!(
        next_open(&w, at("2027-03-27T12:00:00Z")),
        Some(at("2027-03-28T00:00:00Z"))
    );
    assert!(open_at(&w, at("2027-03-28T02:59:00Z")));
    assert!(!open_at(&w, at("2027-03-28T03:00:00Z")));
    // The Sunday after: 23:00–03:00 UTC, an hour earlier in UTC than before.
    assert_eq!(
        next_open(&w, at("2027-03-29T12:00:00Z")),
        Some(at("2027-04-03T23:00:00Z"))
    );
    // Autumn (2027-10-31, 03:00 CEST → 02:00 CET): 01:00 CEST = 23:00 UTC the day before.
    assert_eq!(
        next_open(&w, at("2027-10-30T12:00:00Z")),
        Some(at("2027-10-30T23:00:00Z"))
    );
    assert!(
        open_at(&w, at("2027-10-31T03:59:00Z")),
        "05:00 CET = 04:00 UTC"
    );
    assert!(!open_at(&w, at("2027-10-31T04:00:00Z")));
}

#[test]
fn a_start_in_the_spring_gap_opens_after_the_gap() {
    // 02:30 does not exist in Berlin on 2027-03-28: the start moves forward by the gap's
    // length, to 03:30 CEST (01:30 UTC), as the local clock reads an hour later.
    let w = windows(
        json!([{"days": ["sun"], "start": "02:30", "end": "04:00", "time_zone": "Europe/Berlin"}]),
    );
    let opens = next_open(&w, at("2027-03-27T12:00:00Z")).unwrap();
    assert_eq!(rfc3339(opens), "2027-03-28T01:30:00Z");
    assert!(
        !open_at(&w, at("2027-03-28T02:00:00Z")),
        "04:00 CEST = 02:00 UTC closes it"
    );
}

#[test]
fn one_off_windows_and_lists() {
    let w = windows(json!([
        {"from": "2026-12-24T18:00:00Z", "to": "2026-12-24T20:00:00Z"},
        {"days": ["sat", "sun"], "start": "00:00", "end": "06:00", "time_zone": "UTC"},
    ]));
    // Thursday 2026-12-24: the one-off window comes before the weekend.
    assert_eq!(
        next_open(&w, at("2026-12-24T10:00:00Z")),
        Some(at("2026-12-24T18:00:00Z"))
    );
    assert!(open_at(&w, at("2026-12-24T19:00:00Z")));
    assert_eq!(
        next_open(&w, at("2026-12-24T20:00:00Z")),
        Some(at("2026-12-26T00:00:00Z"))
    );
    // A past one-off window alone never opens again; no windows never open.
    let past = windows(json!([{"from": "2020-01-01T00:00:00Z", "to": "2020-01-02T00:00:00Z"}]));
    assert_eq!(next_open(&past, at("2026-12-24T10:00:00Z")), None);
    assert_eq!(next_open(&[], at("2026-12-24T10:00:00Z")), None);
}
