//! Turning script errors into messages a person can act on, and exit statuses.
//!
//! Every message names `file:line:column`, shows the source line with a caret under the
//! spot, and says what was expected or what happened (the signal, its address and reason
//! for an uncaught SIGSEGV or SIGBUS; the closest known name for a misspelled function).

use crate::script::{AssertFail, STOP_BROKEN_PIPE, STOP_TIMEOUT};
use rhai::{EvalAltResult, ParseError, Position};

/// Exit status: the script ran and every check held.
pub const EXIT_OK: i32 = 0;
/// Exit status: an assertion failed.
pub const EXIT_ASSERT: i32 = 1;
/// Exit status: the script is wrong (syntax, runtime error, uncaught signal, limits).
pub const EXIT_SCRIPT: i32 = 2;
/// Exit status: bad usage or an I/O problem outside the script (missing file, bad flag).
pub const EXIT_USAGE: i32 = 3;
/// Exit status: a bug in vmem itself (a panic caught at the top).
pub const EXIT_INTERNAL: i32 = 4;

/// A message for standard error and the exit status that goes with it.
#[derive(Debug)]
pub struct Failure {
    /// Exit status.
    pub code: i32,
    /// The whole message (possibly several lines).
    pub message: String,
    /// Standard output was closed: exit quietly.
    pub quiet: bool,
}

/// Where errors point: the script's name and text.
#[derive(Debug, Clone, Copy)]
pub struct Src<'a> {
    /// Name shown in messages (the path as given).
    pub name: &'a str,
    /// The script's text.
    pub text: &'a str,
    /// Colour the message.
    pub color: bool,
}

impl Src<'_> {
    fn at(&self, pos: Position) -> String {
        match (pos.line(), pos.position()) {
            (Some(l), Some(c)) => format!("{}:{l}:{c}", self.name),
            (Some(l), None) => format!("{}:{l}", self.name),
            _ => self.name.to_string(),
        }
    }

    /// The source line at `pos` with a caret under its column.
    fn excerpt(&self, pos: Position) -> String {
        let Some(l) = pos.line() else {
            return String::new();
        };
        let Some(text) = self.text.lines().nth(l - 1) else {
            return String::new();
        };
        let num = format!("{l:>5}");
        let mut s = format!("{num} | {text}\n");
        if let Some(c) = pos.position() {
            let pad: String = text
                .chars()
                .take(c.saturating_sub(1))
                .map(|ch| if ch == '\t' { '\t' } else { ' ' })
                .collect();
            s.push_str(&format!("{} | {pad}^\n", " ".repeat(num.len())));
        }
        s
    }

    /// `file:line:col: kind: first line of msg`, the source excerpt, then the rest of msg.
    fn head(&self, kind: &str, pos: Position, msg: &str) -> String {
        let kind = crate::narrate::paint(self.color, crate::narrate::Style::Red, kind);
        let (first, rest) = msg.split_once('\n').unwrap_or((msg, ""));
        let mut s = format!("{}: {kind}: {first}\n", self.at(pos));
        s.push_str(&self.excerpt(pos));
        if !rest.is_empty() {
            s.push_str(rest);
            s.push('\n');
        }
        s
    }
}

/// A syntax error.
pub fn parse_failure(src: Src, err: &ParseError) -> Failure {
    let pos = err.position();
    let mut msg = err.err_type().to_string();
    if let rhai::ParseErrorType::UnknownOperator(op) = err.err_type() {
        msg = format!("unknown operator '{op}'");
    }
    Failure {
        code: EXIT_SCRIPT,
        message: src.head("syntax error", pos, &msg),
        quiet: false,
    }
}

/// Rhai's message without its " (line N, position M)" tail.
fn bare(err: &EvalAltResult) -> String {
    let s = err.to_string();
    match s.rfind(" (line ") {
        Some(i) if s.ends_with(')') => s[..i].to_string(),
        _ => s,
    }
}

/// A runtime error that ended the script.
pub fn eval_failure(src: Src, err: &EvalAltResult, max_ops: u64) -> Failure {
    // Unwind the chain of script-function calls to the innermost error.
    let mut chain: Vec<(String, Position)> = Vec::new();
    let mut e = err;
    while let EvalAltResult::ErrorInFunctionCall(name, _, inner, pos) = e {
        chain.push((name.clone(), *pos));
        e = inner;
    }
    let mut pos = e.position();
    if pos.is_none() {
        if let Some((_, p)) = chain.last() {
            pos = *p;
        }
    }
    let mut code = EXIT_SCRIPT;
    let mut quiet = false;
    let mut message = match e {
        EvalAltResult::ErrorSystem(_, inner) => match inner.downcast_ref::<AssertFail>() {
            Some(a) => {
                code = EXIT_ASSERT;
                src.head("assertion failed", a.pos, &strip_assert(&a.message))
            }
            None => src.head("error", pos, &bare(e)),
        },
        EvalAltResult::ErrorRuntime(v, _) => {
            if let Some(m) = v.read_lock::<rhai::Map>() {
                if let Some(sig) = m.get("signal") {
                    let addr = m.get("addr").and_then(|a| a.as_int().ok()).unwrap_or(0);
                    let pid = m.get("pid").map(|p| p.to_string()).unwrap_or_default();
                    let code_name = m.get("code").map(|c| c.to_string()).unwrap_or_default();
                    let reason = m.get("reason").map(|r| r.to_string()).unwrap_or_default();
                    let mut s = src.head(
                        "uncaught signal",
                        pos,
                        &format!("{sig} ({code_name}) in pid {pid} at 0x{addr:x}: {reason}"),
                    );
                    s.push_str(
                        "  hint: catch it with try { ... } catch (e) { print(e.signal + \" at \" + hex(e.addr)); }\n",
                    );
                    s
                } else if let Some(err) = m.get("error") {
                    let call = m.get("call").map(|c| c.to_string()).unwrap_or_default();
                    let msg = m.get("message").map(|c| c.to_string()).unwrap_or_default();
                    src.head("error", pos, &format!("{call}() failed with {err} ({msg})"))
                } else {
                    src.head("uncaught exception", pos, &v.to_string())
                }
            } else {
                src.head("error", pos, &v.to_string())
            }
        }
        EvalAltResult::ErrorTerminated(v, _) => {
            let why = v.to_string();
            if why == STOP_BROKEN_PIPE {
                quiet = true;
                String::new()
            } else if why == STOP_TIMEOUT {
                src.head("stopped", pos, "the run took longer than --timeout allows")
            } else {
                src.head("stopped", pos, &why)
            }
        }
        EvalAltResult::ErrorTooManyOperations(_) => src.head(
            "stopped",
            pos,
            &format!(
                "the script ran {max_ops} operations, the limit (a runaway loop?); \
                 raise it with --max-ops N, 0 for none"
            ),
        ),
        EvalAltResult::ErrorStackOverflow(_) => src.head(
            "stopped",
            pos,
            "more than 64 nested function calls (runaway recursion?)",
        ),
        EvalAltResult::ErrorDataTooLarge(what, _) => src.head(
            "stopped",
            pos,
            &format!("{what} is larger than a script may build"),
        ),
        EvalAltResult::ErrorFunctionNotFound(sig, _) => {
            let name = sig.split([' ', '(']).next().unwrap_or(sig);
            let name = name.rsplit('.').next().unwrap_or(name);
            let mut msg = format!("no function {sig}");
            if let Some(s) = crate::doc::suggest(name) {
                msg.push_str(&format!("; did you mean `{s}`?"));
            } else if crate::doc::function_names().contains(&name) {
                msg.push_str(&format!(
                    "; `{name}` exists but not with these argument types (see `vmem api`)"
                ));
            }
            src.head("error", pos, &msg)
        }
        EvalAltResult::ErrorVariableNotFound(name, _) => {
            let mut msg = format!("no variable `{name}`");
            if name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit())
            {
                msg.push_str(" (not a known constant either)");
            }
            src.head("error", pos, &msg)
        }
        other => src.head("error", pos, &bare(other)),
    };
    for (name, p) in chain.iter().rev() {
        message.push_str(&format!(
            "  in function `{name}` called at {}\n",
            src.at(*p)
        ));
    }
    Failure {
        code,
        message,
        quiet,
    }
}

fn strip_assert(m: &str) -> String {
    m.strip_prefix("assertion failed: ")
        .or_else(|| m.strip_prefix("assertion failed"))
        .map(|s| {
            if s.is_empty() {
                "the condition is false"
            } else {
                s
            }
        })
        .unwrap_or(m)
        .to_string()
}

/// A failed assertion that a `try` caught: the run still fails.
pub fn caught_assertion(src: Src, a: &AssertFail) -> Failure {
    Failure {
        code: EXIT_ASSERT,
        message: src.head("assertion failed", a.pos, &strip_assert(&a.message)),
        quiet: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_points_at_the_column() {
        let src = Src {
            name: "t.rhai",
            text: "let a = 1;\nlet b = foo(;\n",
            color: false,
        };
        let s = src.excerpt(Position::new(2, 13));
        assert!(s.contains("2 | let b = foo(;"));
        assert!(s.contains("|             ^"), "{s}");
        assert_eq!(src.at(Position::new(2, 13)), "t.rhai:2:13");
    }
}
