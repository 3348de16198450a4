//! Hash and identity functions: `md5`, `sha1`, `sha256`, `sha512` (hex),
//! `base64sha256`, `base64sha512`, their `file*` forms over a file's bytes,
//! and `uuid`.
//!
//! The string forms hash the UTF-8 bytes of their argument; the file forms
//! read the file relative to the module's directory, so a stack hashes the
//! same wherever it is run from.

use base64::Engine;
use plumb_tfplugin::Value;
use sha2::Digest as _;

use super::builtin::{CallContext, Function, FunctionError, only, read_file, text};

/// The hash functions.
pub const FUNCTIONS: &[Function] = &[
    Function::known("base64sha256", |args, _| of_text(args, Sha256, Base64)),
    Function::known("base64sha512", |args, _| of_text(args, Sha512, Base64)),
    Function::known("filebase64sha256", |args, context| {
        of_file(args, context, Sha256, Base64)
    }),
    Function::known("filebase64sha512", |args, context| {
        of_file(args, context, Sha512, Base64)
    }),
    Function::known("filemd5", |args, context| of_file(args, context, Md5, Hex)),
    Function::known("filesha1", |args, context| {
        of_file(args, context, Sha1, Hex)
    }),
    Function::known("filesha256", |args, context| {
        of_file(args, context, Sha256, Hex)
    }),
    Function::known("filesha512", |args, context| {
        of_file(args, context, Sha512, Hex)
    }),
    Function::known("md5", |args, _| of_text(args, Md5, Hex)),
    Function::known("sha1", |args, _| of_text(args, Sha1, Hex)),
    Function::known("sha256", |args, _| of_text(args, Sha256, Hex)),
    Function::known("sha512", |args, _| of_text(args, Sha512, Hex)),
    Function::known("uuid", uuid),
];

/// A hash algorithm.
#[derive(Clone, Copy)]
enum Algorithm {
    Md5,
    Sha1,
    Sha256,
    Sha512,
}
use Algorithm::{Md5, Sha1, Sha256, Sha512};

/// How a digest is written.
#[derive(Clone, Copy)]
enum Encoding {
    Hex,
    Base64,
}
use Encoding::{Base64, Hex};

fn digest(algorithm: Algorithm, encoding: Encoding, bytes: &[u8]) -> String {
    let sum: Vec<u8> = match algorithm {
        Md5 => md5::Md5::digest(bytes).to_vec(),
        Sha1 => sha1::Sha1::digest(bytes).to_vec(),
        Sha256 => sha2::Sha256::digest(bytes).to_vec(),
        Sha512 => sha2::Sha512::digest(bytes).to_vec(),
    };
    match encoding {
        Hex => sum.iter().map(|b| format!("{b:02x}")).collect(),
        Base64 => base64::engine::general_purpose::STANDARD.encode(sum),
    }
}

fn of_text(
    args: &[Value],
    algorithm: Algorithm,
    encoding: Encoding,
) -> Result<Value, FunctionError> {
    let t = text(only(args)?)?;
    Ok(Value::String(digest(algorithm, encoding, t.as_bytes())))
}

fn of_file(
    args: &[Value],
    context: &CallContext<'_>,
    algorithm: Algorithm,
    encoding: Encoding,
) -> Result<Value, FunctionError> {
    let bytes = read_file(context, &text(only(args)?)?)?;
    Ok(Value::String(digest(algorithm, encoding, &bytes)))
}

/// A random UUID (version 4); it ignores its arguments.
fn uuid(_: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    Ok(Value::String(plumb_state::new_id()))
}
