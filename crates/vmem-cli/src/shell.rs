//! `vmem shell`: the script functions at a prompt.
//!
//! Each entry runs on the same machine and scope (variables and `fn` definitions persist),
//! with its steps explained after it. An entry with open brackets continues on the next
//! line. `help`, `help NAME`, `quit`; history in `~/.vmem_history`; Tab completes names.

use crate::narrate::Mode;
use crate::report::{self, Src, EXIT_OK, EXIT_USAGE};
use crate::script::{self, State};
use crate::{doc, end_of_machine, Setup};
use rhai::{Dynamic, Scope, AST};
use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper};
use std::rc::Rc;

/// Completion of function names, constants and `help`.
struct Names {
    words: Vec<String>,
}

impl Completer for Names {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let before = &line[..pos];
        let start = before
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map_or(0, |i| i + 1);
        let word = &before[start..];
        if word.is_empty() {
            return Ok((start, Vec::new()));
        }
        let mut out: Vec<String> = self
            .words
            .iter()
            .filter(|w| w.starts_with(word))
            .cloned()
            .collect();
        out.dedup();
        Ok((start, out))
    }
}

impl Hinter for Names {
    type Hint = String;
}
impl Highlighter for Names {}
impl Validator for Names {}
impl Helper for Names {}

/// Whether `src` has more opening than closing brackets (outside strings and comments).
fn unbalanced(src: &str) -> bool {
    let mut depth: i64 = 0;
    let mut chars = src.chars().peekable();
    let mut in_str: Option<char> = None;
    while let Some(c) = chars.next() {
        if let Some(q) = in_str {
            if c == '\\' {
                chars.next();
            } else if c == q {
                in_str = None;
            }
            continue;
        }
        match c {
            '"' | '`' => in_str = Some(c),
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '{' | '(' | '[' => depth += 1,
            '}' | ')' | ']' => depth -= 1,
            _ => {}
        }
    }
    depth > 0 || in_str == Some('`')
}

fn help(arg: &str) -> String {
    let arg = arg.trim();
    if arg.is_empty() {
        let mut s = String::from("Functions (help NAME for one; `vmem api` prints them all):\n");
        for (title, es) in doc::SECTIONS {
            s.push_str(&format!("  {title}:\n"));
            let names: Vec<&str> = es.iter().map(|e| e.name).collect();
            for l in crate::narrate::wrap(4, &names.join(" "), crate::narrate::WIDTH) {
                s.push_str(&l);
                s.push('\n');
            }
        }
        s.push_str("  Constants: help constants\n  Leave with quit or Ctrl-D.\n");
        return s;
    }
    if arg == "constants" {
        let names = script::constant_names().join(" ");
        return crate::narrate::wrap(2, &names, crate::narrate::WIDTH).join("\n") + "\n";
    }
    let found = doc::find(arg);
    if found.is_empty() {
        let hint = doc::suggest(arg)
            .map(|s| format!(" Did you mean `{s}`?"))
            .unwrap_or_default();
        return format!("No function `{arg}`.{hint}\n");
    }
    found
        .iter()
        .map(|e| {
            let mut s = format!("{}\n", e.sig);
            for l in crate::narrate::wrap(4, e.doc, crate::narrate::WIDTH) {
                s.push_str(&l);
                s.push('\n');
            }
            s
        })
        .collect()
}

fn show(v: &Dynamic) -> Option<String> {
    if v.is_unit() {
        return None;
    }
    if let Ok(i) = v.as_int() {
        return Some(if (0..65536).contains(&i) {
            format!("{i}")
        } else {
            format!("{i} (0x{i:x})")
        });
    }
    if v.is_string() {
        return Some(format!("{:?}", v.to_string()));
    }
    Some(v.to_string())
}

/// Runs the shell until `quit` or end of input; prints the summary at the end.
pub fn shell(setup: &Setup) -> i32 {
    let st: Rc<State> = match setup.state() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vmem: data directory: {e}");
            return EXIT_USAGE;
        }
    };
    let deadline = Rc::new(std::cell::Cell::new(None));
    let engine = script::build_engine(
        &st,
        script::Limits {
            max_ops: setup.max_ops,
            deadline: deadline.clone(),
        },
    );
    let mut words: Vec<String> = doc::function_names()
        .into_iter()
        .map(str::to_string)
        .collect();
    words.extend(script::constant_names());
    words.extend(["help", "quit", "let", "print", "true", "false"].map(String::from));
    words.sort();
    words.dedup();
    let mut rl: Editor<Names, DefaultHistory> = match Editor::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vmem: cannot start the line editor: {e}");
            return EXIT_USAGE;
        }
    };
    rl.set_helper(Some(Names { words }));
    let history =
        std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".vmem_history"));
    if let Some(h) = &history {
        let _ = rl.load_history(h);
    }
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
    if interactive {
        println!(
            "vmem shell: one emulated machine; data files go to {}\n\
             Type help, help mmap, or quit. Try:\n  \
             let p = spawn(); let f = file(\"data\", 8192, \"hello \");\n  \
             let a = p.mmap(0, 8192, PROT_READ, MAP_PRIVATE, p.open(f, O_RDONLY).fd, 0).addr;\n  \
             p.load_str(a, 5)",
            st.data_dir.display()
        );
    }
    let mut scope = Scope::new();
    let mut lib = AST::empty();
    let color = setup.color;
    loop {
        st.out.borrow_mut().flush();
        let mut entry = String::new();
        let mut prompt = "vmem> ";
        let eof = loop {
            match rl.readline(prompt) {
                Ok(line) => {
                    entry.push_str(&line);
                    entry.push('\n');
                    if !unbalanced(&entry) {
                        break false;
                    }
                    prompt = "  ... ";
                }
                Err(ReadlineError::Interrupted) => {
                    entry.clear();
                    break false;
                }
                Err(_) => break true,
            }
        };
        if eof {
            break;
        }
        let text = entry.trim();
        if text.is_empty() {
            continue;
        }
        let _ = rl.add_history_entry(text);
        match text.trim_end_matches(';') {
            "quit" | "exit" | "q" => break,
            h if h == "help" || h.starts_with("help ") => {
                st.out.borrow_mut().flush();
                print!("{}", help(&h[4..]));
                continue;
            }
            _ => {}
        }
        let src = Src {
            name: "<shell>",
            text,
            color,
        };
        let ast = match engine.compile_with_scope(&scope, text) {
            Ok(a) => a,
            Err(e) => {
                st.out.borrow_mut().flush();
                eprint!("{}", report::parse_failure(src, &e).message);
                continue;
            }
        };
        lib = lib.merge(&ast.clone_functions_only());
        let run = lib.merge(&ast.clone_statements_only());
        deadline.set(setup.timeout.map(|t| std::time::Instant::now() + t));
        let r = engine.eval_ast_with_scope::<Dynamic>(&mut scope, &run);
        st.out.borrow_mut().flush();
        match r {
            Ok(v) => {
                if let Some(a) = st.assertion.borrow_mut().take() {
                    eprint!("{}", report::caught_assertion(src, &a).message);
                } else if let Some(s) = show(&v) {
                    if st.out.borrow().mode() == Mode::Json {
                        st.out.borrow_mut().print(&format!("= {s}"));
                    } else {
                        println!("= {s}");
                    }
                }
            }
            Err(e) => {
                st.assertion.borrow_mut().take();
                let f = report::eval_failure(src, &e, setup.max_ops);
                if f.quiet {
                    break;
                }
                eprint!("{}", f.message);
            }
        }
    }
    if let Some(h) = &history {
        let _ = rl.save_history(h);
    }
    end_of_machine(&st);
    EXIT_OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brackets_decide_continuation() {
        assert!(unbalanced("if x {"));
        assert!(!unbalanced("if x { 1 }"));
        assert!(!unbalanced("print(\"{\")"));
        assert!(!unbalanced("let a = 1; // {"));
    }

    #[test]
    fn help_finds_functions() {
        assert!(help("mmap").contains("p.mmap(addr, len, prot, flags, fd, offset)"));
        assert!(help("").contains("Memory syscalls"));
        assert!(help("mmapp").contains("Did you mean `mmap`?"));
    }
}
