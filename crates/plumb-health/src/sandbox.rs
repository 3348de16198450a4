//! The Lua sandbox a health script runs in.
//!
//! Every run gets a fresh Lua 5.2 state (scripts set globals such as `hs`,
//! so no state is shared between two objects) holding only what Argo CD's
//! scripts use: the base library without its file and chunk loaders
//! (`dofile`, `loadfile`, `load`, `loadstring`, `require` and `module` are
//! absent), `table`, `string` and `math`, and an `os` table with only `time`
//! and `date` (both in UTC). `table.getn` and a global `unpack` are added
//! because Argo CD's Lua (gopher-lua, Lua 5.1 semantics) has them and its
//! scripts call them. There is no `io`, no `debug`, no `package`, and
//! `print` writes nowhere: what a script prints is kept in [`Run::printed`].
//!
//! Three limits hold whatever the script does:
//!
//! - **instructions**: a count hook fires every [`HOOK_EVERY`] VM
//!   instructions and raises an error once [`Limits::instructions`] have run;
//! - **time**: the same hook raises an error once [`Limits::wall`] has passed
//!   (C functions such as pattern matching are bounded from outside, see
//!   `crate::assess`);
//! - **memory**: the allocator refuses to grow the state past
//!   [`Limits::memory`] bytes, so `string.rep` or a table that grows forever
//!   fails with a memory error.
//!
//! A script cannot swallow a limit with `pcall`: `pcall` and `xpcall` are
//! wrapped so that once a limit is hit (or memory ran out) the error goes on
//! up to plumb instead of being returned to the script.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use mlua::chunk::ChunkMode;
use mlua::{HookTriggers, Lua, LuaOptions, StdLib, Table, Value as LuaValue, VmState};
use serde_json::Value;

use crate::oslib;

/// How often (in VM instructions) the limit hook runs.
pub const HOOK_EVERY: u32 = 10_000;

/// Nesting of the object's JSON beyond which it is refused.
const MAX_DEPTH: usize = 256;

/// Bytes of `print` output kept per run.
const MAX_PRINTED: usize = 64 * 1024;

/// What one run of a script may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// VM instructions (counted in steps of [`HOOK_EVERY`]).
    pub instructions: u64,
    /// Bytes the Lua state may hold, the object included.
    pub memory: usize,
    /// Wall-clock time of one run.
    pub wall: Duration,
}

impl Default for Limits {
    /// 20 million instructions (a fraction of a second; Argo CD's own scripts
    /// need a few thousand), 64 MiB, and Argo CD's one-second timeout.
    fn default() -> Limits {
        Limits {
            instructions: 20_000_000,
            memory: 64 << 20,
            wall: Duration::from_secs(1),
        }
    }
}

/// Why a run produced no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    /// The script does not parse.
    #[error("{0}")]
    Syntax(String),
    /// The script raised an error (or called something that did).
    #[error("{0}")]
    Runtime(String),
    /// The script ran more instructions than allowed.
    #[error("health script stopped after {0} Lua instructions (its limit): does it loop forever?")]
    Instructions(u64),
    /// The script ran longer than allowed.
    #[error("health script stopped after {0:?} (its time limit)")]
    Time(Duration),
    /// The script needed more memory than allowed.
    #[error("health script ran out of memory (its limit is {0} bytes)")]
    Memory(usize),
    /// The object could not be handed to Lua.
    #[error("the object cannot be given to a health script: {0}")]
    Object(String),
    /// The Lua state could not be set up.
    #[error("cannot start the Lua runtime: {0}")]
    Setup(String),
}

/// A field of a returned table, as far as the verdict cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// Absent or nil.
    Nil,
    /// A string.
    Str(String),
    /// Anything else, by Lua type name.
    Other(&'static str),
}

/// The shape of a returned table's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    /// No keys at all.
    Empty,
    /// Only the keys 1..n.
    Sequence,
    /// Only string keys.
    Strings,
    /// Anything else (numbers and strings mixed, sparse numbers, other types).
    Mixed,
}

/// What the script returned (its last return value), copied out of Lua.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Returned {
    /// `nil`, or nothing.
    Nil,
    /// A table: its key shape and its `status` and `message` fields.
    Table {
        /// The shape of its keys.
        keys: Keys,
        /// `status`.
        status: Field,
        /// `message`.
        message: Field,
    },
    /// Anything else, by Lua type name.
    Other(&'static str),
}

/// One finished run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The script's last return value.
    pub returned: Returned,
    /// What the script printed, line by line.
    pub printed: Vec<String>,
}

/// What the limit hook saw.
#[derive(Debug, Default)]
struct Budget {
    instructions: Cell<u64>,
    hit: Cell<Option<Hit>>,
}

#[derive(Debug, Clone, Copy)]
enum Hit {
    Instructions,
    Time,
}

/// Check that `code` parses, without running it.
pub fn check_syntax(code: &str, name: &str) -> Result<(), ScriptError> {
    let lua = new_state(&Limits::default())?;
    lua.load(code)
        .set_name(chunk_name())
        .set_mode(ChunkMode::Text)
        .into_function()
        .map(|_| ())
        .map_err(|e| ScriptError::Syntax(name_positions(&lua_message(&e), name)))
}

/// Run `code` (named `name` in error positions) with the global `obj` set to
/// `obj`, within `limits`.
pub fn run(code: &str, name: &str, obj: &Value, limits: &Limits) -> Result<Run, ScriptError> {
    run_named(code, obj, limits).map_err(|e| match e {
        ScriptError::Syntax(m) => ScriptError::Syntax(name_positions(&m, name)),
        ScriptError::Runtime(m) => ScriptError::Runtime(name_positions(&m, name)),
        other => other,
    })
}

fn run_named(code: &str, obj: &Value, limits: &Limits) -> Result<Run, ScriptError> {
    let lua = new_state(limits)?;
    let budget = Rc::new(Budget::default());
    let printed = Rc::new(RefCell::new(Printed::default()));
    let mem_error = |e: mlua::Error| classify(e, &budget, limits);
    install_library(&lua, &budget, &printed).map_err(mem_error)?;
    let globals = lua.globals();
    let object = to_lua(&lua, obj, 0).map_err(|e| match e {
        ToLuaError::Depth => ScriptError::Object(format!("nested deeper than {MAX_DEPTH} levels")),
        ToLuaError::Lua(e) => classify(e, &budget, limits),
    })?;
    globals.set("obj", object).map_err(mem_error)?;
    let function = lua
        .load(code)
        .set_name(chunk_name())
        .set_mode(ChunkMode::Text)
        .into_function()
        .map_err(|e| match e {
            mlua::Error::SyntaxError { .. } => ScriptError::Syntax(lua_message(&e)),
            other => classify(other, &budget, limits),
        })?;

    let started = Instant::now();
    let hook_budget = budget.clone();
    let limits_copy = *limits;
    lua.set_hook(
        HookTriggers::new().every_nth_instruction(HOOK_EVERY),
        move |_lua, _debug| {
            let ran = hook_budget.instructions.get() + u64::from(HOOK_EVERY);
            hook_budget.instructions.set(ran);
            if hook_budget.hit.get().is_none() {
                if ran > limits_copy.instructions {
                    hook_budget.hit.set(Some(Hit::Instructions));
                } else if started.elapsed() > limits_copy.wall {
                    hook_budget.hit.set(Some(Hit::Time));
                }
            }
            // Once over a limit, every later tick fails too.
            match hook_budget.hit.get() {
                Some(_) => Err(mlua::Error::runtime("health script limit reached")),
                None => Ok(VmState::Continue),
            }
        },
    )
    .map_err(|e| ScriptError::Setup(e.to_string()))?;
    let result = function.call::<mlua::MultiValue>(());
    lua.remove_hook();
    let values = result.map_err(|e| classify(e, &budget, limits))?;
    let last = values.into_iter().last().unwrap_or(LuaValue::Nil);
    let returned = returned(&last);
    let printed = std::mem::take(&mut printed.borrow_mut().lines);
    Ok(Run { returned, printed })
}

/// The chunk name Lua puts in error positions: a marker that
/// [`name_positions`] replaces with the script's origin afterwards, because
/// Lua cuts chunk names to 59 bytes and origins (a ConfigMap and its key)
/// are longer.
const CHUNK: &str = "\u{1}";

fn chunk_name() -> String {
    // `=` makes Lua use the name as is.
    format!("={CHUNK}")
}

/// `message` with the chunk marker replaced by `name`.
fn name_positions(message: &str, name: &str) -> String {
    message.replace(CHUNK, name)
}

fn new_state(limits: &Limits) -> Result<Lua, ScriptError> {
    let lua = Lua::new_with(
        StdLib::TABLE | StdLib::STRING | StdLib::MATH,
        LuaOptions::default(),
    )
    .map_err(|e| ScriptError::Setup(e.to_string()))?;
    lua.set_memory_limit(limits.memory)
        .map_err(|e| ScriptError::Setup(e.to_string()))?;
    Ok(lua)
}

/// Turn an error out of Lua into the limit it hit, or its message.
fn classify(e: mlua::Error, budget: &Budget, limits: &Limits) -> ScriptError {
    match budget.hit.get() {
        Some(Hit::Instructions) => return ScriptError::Instructions(limits.instructions),
        Some(Hit::Time) => return ScriptError::Time(limits.wall),
        None => {}
    }
    if is_memory_error(&e) {
        return ScriptError::Memory(limits.memory);
    }
    ScriptError::Runtime(lua_message(&e))
}

fn is_memory_error(e: &mlua::Error) -> bool {
    match e {
        mlua::Error::MemoryError(_) => true,
        mlua::Error::CallbackError { cause, .. } => is_memory_error(cause),
        mlua::Error::RuntimeError(m) => m.starts_with(MEMORY_MESSAGE),
        _ => false,
    }
}

/// The message Lua gives a failed allocation.
const MEMORY_MESSAGE: &str = "not enough memory";

/// The message of an error out of Lua: the innermost cause, without the
/// stack traceback that mlua appends (Argo CD drops it too).
fn lua_message(e: &mlua::Error) -> String {
    let text = match e {
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::RuntimeError(m) => m.clone(),
        mlua::Error::CallbackError { cause, .. } => return lua_message(cause),
        other => other.to_string(),
    };
    match text.find("\nstack traceback:") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

#[derive(Default)]
struct Printed {
    lines: Vec<String>,
    bytes: usize,
}

/// Strip the base library of its loaders, add what Argo CD's scripts use,
/// and make `pcall`/`xpcall` pass limit errors on.
fn install_library(
    lua: &Lua,
    budget: &Rc<Budget>,
    printed: &Rc<RefCell<Printed>>,
) -> mlua::Result<()> {
    let g = lua.globals();
    for name in [
        "dofile",
        "loadfile",
        "load",
        "loadstring",
        "require",
        "module",
    ] {
        g.raw_set(name, LuaValue::Nil)?;
    }
    let string: Table = g.get("string")?;
    string.raw_set("dump", LuaValue::Nil)?;

    let sink = printed.clone();
    let print = lua.create_function(move |lua, args: mlua::Variadic<LuaValue>| {
        let tostring: mlua::Function = lua.globals().get("tostring")?;
        let mut parts = Vec::with_capacity(args.len());
        for a in args {
            let s: mlua::LuaString = tostring.call(a)?;
            parts.push(s.to_string_lossy());
        }
        let line = parts.join("\t");
        let mut p = sink.borrow_mut();
        if p.bytes + line.len() <= MAX_PRINTED {
            p.bytes += line.len();
            p.lines.push(line);
        }
        Ok(())
    })?;
    g.raw_set("print", print)?;

    let os = lua.create_table()?;
    os.raw_set("time", lua.create_function(oslib::time)?)?;
    os.raw_set("date", lua.create_function(oslib::date)?)?;
    g.raw_set("os", os)?;

    let over = budget.clone();
    let exhausted = lua.create_function(move |_, err: LuaValue| {
        let out_of_memory = matches!(&err, LuaValue::String(s) if s.to_string_lossy().starts_with(MEMORY_MESSAGE))
            || matches!(&err, LuaValue::Error(e) if is_memory_error(e));
        Ok(over.hit.get().is_some() || out_of_memory)
    })?;
    lua.load(PRELUDE)
        .set_name("=plumb-health prelude")
        .set_mode(ChunkMode::Text)
        .call::<()>(exhausted)?;
    Ok(())
}

/// Runs once per state, before the script, with `exhausted` as its argument.
const PRELUDE: &str = r#"
local exhausted = ...
local raw_pcall, raw_xpcall, raw_error, unpack_ = pcall, xpcall, error, table.unpack
local function pass(ok, ...)
  if not ok and exhausted((...)) then raw_error((...), 0) end
  return ok, ...
end
pcall = function(f, ...) return pass(raw_pcall(f, ...)) end
xpcall = function(f, handler, ...) return pass(raw_xpcall(f, handler, ...)) end
unpack = unpack_
table.getn = function(t) return #t end
"#;

enum ToLuaError {
    Depth,
    Lua(mlua::Error),
}

impl From<mlua::Error> for ToLuaError {
    fn from(e: mlua::Error) -> ToLuaError {
        ToLuaError::Lua(e)
    }
}

/// JSON to Lua as Argo CD does it: objects become tables keyed by string,
/// arrays 1-based tables (nulls in them dropped, as gopher-lua's `Append`
/// drops nil), numbers Lua numbers, null nil.
fn to_lua(lua: &Lua, v: &Value, depth: usize) -> Result<LuaValue, ToLuaError> {
    if depth > MAX_DEPTH {
        return Err(ToLuaError::Depth);
    }
    Ok(match v {
        Value::Null => LuaValue::Nil,
        Value::Bool(b) => LuaValue::Boolean(*b),
        Value::Number(n) => LuaValue::Number(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => LuaValue::String(lua.create_string(s)?),
        Value::Array(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            let mut i = 0;
            for item in items {
                if item.is_null() {
                    continue;
                }
                i += 1;
                t.raw_set(i, to_lua(lua, item, depth + 1)?)?;
            }
            LuaValue::Table(t)
        }
        Value::Object(map) => {
            let t = lua.create_table_with_capacity(0, map.len())?;
            for (k, item) in map {
                if item.is_null() {
                    continue;
                }
                t.raw_set(lua.create_string(k)?, to_lua(lua, item, depth + 1)?)?;
            }
            LuaValue::Table(t)
        }
    })
}

fn returned(v: &LuaValue) -> Returned {
    match v {
        LuaValue::Nil => Returned::Nil,
        LuaValue::Table(t) => Returned::Table {
            keys: keys_of(t),
            status: field(t, "status"),
            message: field(t, "message"),
        },
        other => Returned::Other(other.type_name()),
    }
}

fn field(t: &Table, name: &str) -> Field {
    match t.raw_get::<LuaValue>(name) {
        Ok(LuaValue::Nil) | Err(_) => Field::Nil,
        Ok(LuaValue::String(s)) => Field::Str(s.to_string_lossy()),
        Ok(other) => Field::Other(other.type_name()),
    }
}

fn keys_of(t: &Table) -> Keys {
    let len = t.raw_len() as i64;
    let (mut count, mut numbers, mut strings, mut in_sequence) = (0usize, 0usize, 0usize, 0usize);
    for pair in t.pairs::<LuaValue, LuaValue>() {
        let Ok((k, _)) = pair else {
            return Keys::Mixed;
        };
        count += 1;
        match k {
            LuaValue::String(_) => strings += 1,
            LuaValue::Integer(i) => {
                numbers += 1;
                if (1..=len).contains(&i) {
                    in_sequence += 1;
                }
            }
            _ => numbers += 1,
        }
    }
    match (count, numbers, strings) {
        (0, _, _) => Keys::Empty,
        (_, 0, _) => Keys::Strings,
        (_, _, 0) if in_sequence == numbers && numbers as i64 == len => Keys::Sequence,
        _ => Keys::Mixed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn quick() -> Limits {
        Limits {
            instructions: 2_000_000,
            memory: 8 << 20,
            wall: Duration::from_secs(5),
        }
    }

    fn run_code(code: &str) -> Result<Run, ScriptError> {
        run(code, "test.lua", &json!({"kind": "Widget"}), &quick())
    }

    fn status_of(r: &Run) -> Field {
        match &r.returned {
            Returned::Table { status, .. } => status.clone(),
            other => panic!("not a table: {other:?}"),
        }
    }

    #[test]
    fn io_os_and_loaders_are_absent() {
        for name in [
            "io",
            "debug",
            "package",
            "require",
            "module",
            "dofile",
            "loadfile",
            "load",
            "loadstring",
            "setfenv",
            "getfenv",
            "coroutine",
            "string.dump",
            "os.execute",
            "os.exit",
            "os.getenv",
            "os.remove",
            "os.rename",
            "os.tmpname",
            "os.clock",
        ] {
            let code = format!("return {{status = tostring({name} == nil)}}");
            let r = run_code(&code).unwrap();
            assert_eq!(
                status_of(&r),
                Field::Str("true".into()),
                "{name} is present"
            );
        }
        // What Argo CD's scripts use is there.
        for name in [
            "os.time",
            "os.date",
            "table.insert",
            "table.concat",
            "table.sort",
            "table.getn",
            "unpack",
            "string.find",
            "string.format",
            "string.gsub",
            "math.huge",
            "math.floor",
            "pcall",
            "pairs",
            "ipairs",
            "tonumber",
        ] {
            let code = format!("return {{status = tostring({name} ~= nil)}}");
            let r = run_code(&code).unwrap();
            assert_eq!(
                status_of(&r),
                Field::Str("true".into()),
                "{name} is missing"
            );
        }
        // A script that reaches for the file system fails cleanly.
        let err =
            run_code("local f = io.open('/etc/passwd') return {status = 'Healthy'}").unwrap_err();
        assert!(
            matches!(&err, ScriptError::Runtime(m) if m.starts_with("test.lua:1:") && m.contains("io")),
            "{err:?}"
        );
    }

    #[test]
    fn an_endless_loop_is_stopped() {
        let started = Instant::now();
        let err = run_code("while true do end").unwrap_err();
        assert_eq!(err, ScriptError::Instructions(2_000_000));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(err.to_string().contains("loop forever"), "{err}");
    }

    #[test]
    fn pcall_cannot_swallow_a_limit() {
        let err = run_code(
            "while true do pcall(function() while true do end end) end return {status = 'Healthy'}",
        )
        .unwrap_err();
        assert_eq!(err, ScriptError::Instructions(2_000_000));
        let err = run_code(
            "local ok = pcall(function() local t = {} while true do t[#t + 1] = string.rep('x', 1000) .. #t end end)
             return {status = 'Healthy'}",
        )
        .unwrap_err();
        assert_eq!(err, ScriptError::Memory(8 << 20));
        let err = run_code(
            "xpcall(function() while true do end end, function(e) return e end) return {status = 'Healthy'}",
        )
        .unwrap_err();
        assert_eq!(err, ScriptError::Instructions(2_000_000));
        // Ordinary errors are still caught, as in any Lua.
        let r = run_code("local ok = pcall(error, 'boom') return {status = tostring(ok)}").unwrap();
        assert_eq!(status_of(&r), Field::Str("false".into()));
    }

    #[test]
    fn the_wall_clock_stops_slow_code() {
        let limits = Limits {
            instructions: u64::MAX,
            memory: 8 << 20,
            wall: Duration::from_millis(200),
        };
        let started = Instant::now();
        let err = run("while true do end", "t.lua", &json!({}), &limits).unwrap_err();
        assert_eq!(err, ScriptError::Time(Duration::from_millis(200)));
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn memory_bombs_are_stopped() {
        for bomb in [
            "local s = string.rep('x', 1e9) return {status = 'Healthy'}",
            "local s = 'x' while true do s = s .. s end",
            "local t = {} local i = 0 while true do i = i + 1 t[i] = {i, i, i} end",
        ] {
            let started = Instant::now();
            let err = run_code(bomb).unwrap_err();
            assert_eq!(err, ScriptError::Memory(8 << 20), "{bomb}");
            assert!(err.to_string().contains("memory"), "{err}");
            assert!(started.elapsed() < Duration::from_secs(5), "{bomb}");
        }
        // A large object counts against the limit too.
        let big = json!({"data": "x".repeat(16 << 20)});
        let err = run("return nil", "t.lua", &big, &quick()).unwrap_err();
        assert_eq!(err, ScriptError::Memory(8 << 20));
    }

    #[test]
    fn errors_name_the_script_and_line() {
        let err = run_code("local x = 1\nreturn obj.status.phase").unwrap_err();
        match err {
            ScriptError::Runtime(m) => {
                assert!(m.starts_with("test.lua:2:"), "{m}");
                assert!(!m.contains("stack traceback"), "{m}");
            }
            other => panic!("{other:?}"),
        }
        let err = run_code("if then").unwrap_err();
        assert!(
            matches!(&err, ScriptError::Syntax(m) if m.starts_with("test.lua:1:")),
            "{err:?}"
        );
        let err = run_code("error('it broke')").unwrap_err();
        assert_eq!(err, ScriptError::Runtime("test.lua:1: it broke".into()));
        // Lua cuts chunk names at 59 bytes; plumb keeps the whole origin.
        let long = "configmap argocd/argocd-cm resource.customizations.health.example.com_Widget";
        let err = run("local x = nil\nreturn x.y", long, &json!({}), &quick()).unwrap_err();
        assert!(
            matches!(&err, ScriptError::Runtime(m) if m.starts_with(&format!("{long}:2: "))),
            "{err:?}"
        );
    }

    #[test]
    fn obj_is_the_object_as_argo_gives_it() {
        let obj = json!({
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "w", "generation": 3, "annotations": null},
            "status": {
                "conditions": [
                    {"type": "Ready", "status": "True"},
                    null,
                    {"type": "Synced", "status": "False"}
                ],
                "ratio": 0.5,
                "ready": true,
                "empty": [],
            }
        });
        let code = r#"
            local c = obj.status.conditions
            local parts = {
              #c, c[1].type, c[2].type, tostring(c[3]),
              obj.metadata.generation, tostring(obj.metadata.annotations),
              obj.status.ratio, tostring(obj.status.ready), #obj.status.empty,
              obj.metadata.generation / 3,
            }
            return {status = "Healthy", message = table.concat(parts, ",")}
        "#;
        let r = run(code, "t.lua", &obj, &quick()).unwrap();
        match r.returned {
            Returned::Table { message, .. } => assert_eq!(
                message,
                Field::Str("2,Ready,Synced,nil,3,nil,0.5,true,0,1".into())
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lua_5_1_habits_and_goto_work() {
        let code = r#"
            local n = 0
            for _, v in ipairs({1, 2, 3, 4}) do
              if v % 2 == 0 then goto continue end
              n = n + v
              ::continue::
            end
            local a, b = unpack({table.getn({1, 2}), n})
            return {status = "Healthy", message = a .. "/" .. b}
        "#;
        let r = run_code(code).unwrap();
        match r.returned {
            Returned::Table { message, .. } => assert_eq!(message, Field::Str("2/4".into())),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn os_time_and_date_are_utc() {
        let code = r#"
            local t = os.time({year = "2024", month = "02", day = "29", hour = "23", min = "59", sec = "60"})
            return {status = "Healthy", message = t .. " " .. os.date("!%Y-%m-%dT%H:%M:%SZ", t)
              .. " " .. os.date("*t", 0).year .. " " .. tostring(os.time() > 1.7e9)}
        "#;
        let r = run_code(code).unwrap();
        match r.returned {
            Returned::Table { message, .. } => assert_eq!(
                message,
                Field::Str("1709251200 2024-03-01T00:00:00Z 1970 true".into())
            ),
            other => panic!("{other:?}"),
        }
        let err = run_code("return os.time({year = 2024})").unwrap_err();
        assert!(err.to_string().contains("field 'day' missing"), "{err}");
    }

    #[test]
    fn print_goes_nowhere_but_is_kept() {
        let r = run_code("print('hello', 1, nil) return nil").unwrap();
        assert_eq!(r.printed, vec!["hello\t1\tnil".to_string()]);
        assert_eq!(r.returned, Returned::Nil);
    }

    #[test]
    fn returned_shapes() {
        assert_eq!(run_code("return").unwrap().returned, Returned::Nil);
        assert_eq!(
            run_code("return 'Healthy'").unwrap().returned,
            Returned::Other("string")
        );
        let keys = |code: &str| match run_code(code).unwrap().returned {
            Returned::Table { keys, .. } => keys,
            other => panic!("{other:?}"),
        };
        assert_eq!(keys("return {}"), Keys::Empty);
        assert_eq!(keys("return {1, 2}"), Keys::Sequence);
        assert_eq!(keys("return {status = 'x'}"), Keys::Strings);
        assert_eq!(keys("return {1, status = 'x'}"), Keys::Mixed);
        assert_eq!(keys("return {[2] = 1}"), Keys::Mixed);
        // The last of several values counts, as in Argo CD.
        assert_eq!(
            run_code("return {status = 'Healthy'}, 'x'")
                .unwrap()
                .returned,
            Returned::Other("string")
        );
    }

    #[test]
    fn runs_share_nothing() {
        let first = run_code("hs = {status = 'Degraded'} string.find = nil return hs").unwrap();
        assert_eq!(status_of(&first), Field::Str("Degraded".into()));
        let second =
            run_code("return {status = tostring(hs) .. tostring(string.find ~= nil)}").unwrap();
        assert_eq!(status_of(&second), Field::Str("niltrue".into()));
    }
}
