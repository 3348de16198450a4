//! The two `os` functions a health script may call, `os.time` and `os.date`,
//! as in Argo CD's restricted `os` table, with Lua's own semantics. The clock
//! is read, never set, and every date is in UTC (Kubernetes timestamps are).

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, Zoned};
use mlua::{Lua, Table, Value};

/// `os.time([t])`: now, or the date table `t` (fields `year`, `month`,
/// `day`, and optionally `hour` (12), `min`, `sec`; out-of-range values roll
/// over as C's `mktime` does), as seconds since the epoch.
pub(crate) fn time(_lua: &Lua, table: Option<Table>) -> mlua::Result<f64> {
    let Some(t) = table else {
        return Ok(Timestamp::now().as_second() as f64);
    };
    // Read in the order Lua reads them, so the same field is named missing.
    let sec = field(&t, "sec", Some(0))?;
    let min = field(&t, "min", Some(0))?;
    let hour = field(&t, "hour", Some(12))?;
    let day = field(&t, "day", None)?;
    let month = field(&t, "month", None)?;
    let year = field(&t, "year", None)?;
    let unrepresentable = || mlua::Error::runtime("time result cannot be represented");
    let year = i16::try_from(year).map_err(|_| unrepresentable())?;
    let start = Date::new(year, 1, 1)
        .map_err(|_| unrepresentable())?
        .to_datetime(jiff::civil::Time::midnight());
    let span = Span::new()
        .try_months(month - 1)
        .and_then(|s| s.try_days(day - 1))
        .and_then(|s| s.try_hours(hour))
        .and_then(|s| s.try_minutes(min))
        .and_then(|s| s.try_seconds(sec))
        .map_err(|_| unrepresentable())?;
    let at: DateTime = start.checked_add(span).map_err(|_| unrepresentable())?;
    let zoned = at.to_zoned(TimeZone::UTC).map_err(|_| unrepresentable())?;
    Ok(zoned.timestamp().as_second() as f64)
}

/// A date-table field as an integer: numbers and numeric strings count (as in
/// Lua); `default` when absent, an error when absent and required.
fn field(t: &Table, name: &str, default: Option<i64>) -> mlua::Result<i64> {
    let v: Value = t.raw_get(name)?;
    let n = match &v {
        Value::Integer(i) => Some(*i as f64),
        Value::Number(n) => Some(*n),
        Value::String(s) => s.to_string_lossy().trim().parse::<f64>().ok(),
        _ => None,
    };
    match (n, default) {
        (Some(n), _) if n.is_finite() => Ok(n.floor() as i64),
        (None, Some(d)) if v.is_nil() => Ok(d),
        _ => Err(mlua::Error::runtime(format!(
            "field '{name}' missing in date table"
        ))),
    }
}

/// `os.date([format [, time]])`: `time` (default now) formatted with
/// strftime's `format` (default `%c`), or as a table for `*t`. A leading `!`
/// (UTC) is accepted and changes nothing: every date here is UTC.
pub(crate) fn date(lua: &Lua, (format, at): (Option<String>, Option<f64>)) -> mlua::Result<Value> {
    let format = format.unwrap_or_else(|| "%c".to_string());
    let format = format.strip_prefix('!').unwrap_or(&format);
    let ts = match at {
        None => Timestamp::now(),
        Some(s) => Timestamp::from_second(s.floor() as i64)
            .map_err(|_| mlua::Error::runtime("time out of range"))?,
    };
    let zoned: Zoned = ts.to_zoned(TimeZone::UTC);
    if format.starts_with("*t") {
        let t = lua.create_table()?;
        t.raw_set("year", zoned.year())?;
        t.raw_set("month", zoned.month())?;
        t.raw_set("day", zoned.day())?;
        t.raw_set("hour", zoned.hour())?;
        t.raw_set("min", zoned.minute())?;
        t.raw_set("sec", zoned.second())?;
        t.raw_set("wday", zoned.weekday().to_sunday_one_offset())?;
        t.raw_set("yday", zoned.day_of_year())?;
        t.raw_set("isdst", false)?;
        return Ok(Value::Table(t));
    }
    let text = jiff::fmt::strtime::format(format, &zoned)
        .map_err(|e| mlua::Error::runtime(format!("bad os.date format {format:?}: {e}")))?;
    Ok(Value::String(lua.create_string(text)?))
}
