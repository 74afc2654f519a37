//! Statements of the language, before any meaning is given to option names.
//!
//! ```text
//! block     := statement*
//! statement := NAME '=' value | NAME '+=' value       an option (a list when braced)
//!            | NAME '{' block '}'                     a section
//!            | NAME TITLE '{' block '}'               a titled section
//!            | NAME '(' [arg (',' arg)*] ')'          a function call
//! value     := STR | '{' [STR (',' STR)*] '}'
//! ```
//!
//! Five calls act while the file is read, because they change how later tokens scan:
//! `define(NAME, value)` sets a variable unless it is already set (the environment wins),
//! `define!(NAME, value)` always sets it, `define-eval(NAME, "expr")` and `define-eval!` set it
//! to the integer value of an expression (see [`super::eval`]), and `include("file")` reads
//! another file in place (a relative path is relative to the including file; at most ten
//! levels). `define*` is allowed only at the top level, `include` at the top level and in
//! `file-resource`, `task` and `on-*` sections. In meta.conf (read from an archive) none of
//! them is allowed.
//!
//! While creating, each top-level `file-resource NAME { host-path = "P" }` defines
//! `FWUP_SIZE_NAME` (with `-`, `.` and `/` turned into `_`) to the size of P in bytes, so later
//! lines can use it.

use super::lexer::{Lexer, Lookup, Tok};
use super::{ConfigError, Span, Vars, eval};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One statement and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// What the statement is.
    pub kind: NodeKind,
    /// File and line of its first token.
    pub span: Span,
}

/// The statement kinds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// `name = value` or `name = {a, b}` (`braces`), or `name += ...` (`append`).
    Assign {
        /// Option name.
        name: String,
        /// The values given.
        values: Vec<String>,
        /// Whether the values were given as a braced list.
        braces: bool,
        /// Whether `+=` was used.
        append: bool,
    },
    /// `name [title] { ... }`.
    Section {
        /// Section name.
        name: String,
        /// Title, for titled sections.
        title: Option<String>,
        /// The statements inside.
        body: Vec<Node>,
    },
    /// `name(args...)`.
    Call {
        /// Function name.
        name: String,
        /// The arguments, already substituted.
        args: Vec<String>,
    },
}

/// Whether the text is a user's fwup.conf or an archive's meta.conf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A fwup.conf being turned into an archive: `define`/`include` act.
    Create,
    /// A meta.conf from an archive: no file access, no definitions.
    Meta,
}

const MAX_INCLUDE_DEPTH: usize = 10;
const MAX_NESTING: usize = 20;

/// Reads statements from a file and the files it includes.
pub struct Parser<'v> {
    stack: Vec<Lexer>,
    vars: &'v mut Vars,
    mode: Mode,
    peeked: Option<(Tok, Span)>,
}

struct VarsLookup<'a>(&'a Vars);
impl Lookup for VarsLookup<'_> {
    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).map(str::to_owned)
    }
}

impl<'v> Parser<'v> {
    /// A parser over `text`, named `file` in messages, reading and setting `vars`.
    pub fn new(text: impl Into<Vec<u8>>, file: &str, vars: &'v mut Vars, mode: Mode) -> Self {
        Parser {
            stack: vec![Lexer::new(text, Arc::from(file))],
            vars,
            mode,
            peeked: None,
        }
    }

    /// Parses the whole input into top-level statements.
    pub fn parse(mut self) -> Result<Vec<Node>, ConfigError> {
        let mut path = Vec::new();
        self.block(&mut path)
    }

    fn raw_next(&mut self) -> Result<(Tok, Span), ConfigError> {
        loop {
            let lookup = VarsLookup(self.vars);
            let Some(lexer) = self.stack.last_mut() else {
                return Ok((Tok::Eof, Span::new(Arc::from(""), 0)));
            };
            let (tok, span) = lexer.next(&lookup)?;
            if tok == Tok::Eof && self.stack.len() > 1 {
                self.stack.pop();
                continue;
            }
            return Ok((tok, span));
        }
    }

    fn next(&mut self) -> Result<(Tok, Span), ConfigError> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.raw_next(),
        }
    }

    fn peek(&mut self) -> Result<&(Tok, Span), ConfigError> {
        if self.peeked.is_none() {
            let t = self.raw_next()?;
            self.peeked = Some(t);
        }
        match &self.peeked {
            Some(t) => Ok(t),
            None => Err(ConfigError::new("internal parser error")),
        }
    }

    fn block(&mut self, path: &mut Vec<String>) -> Result<Vec<Node>, ConfigError> {
        if path.len() > MAX_NESTING {
            return Err(ConfigError::new("sections nested too deeply"));
        }
        let mut nodes = Vec::new();
        loop {
            let (tok, span) = self.next()?;
            let name = match tok {
                Tok::Eof if path.is_empty() => return Ok(nodes),
                Tok::Eof => {
                    return Err(ConfigError::at(
                        span,
                        format!("premature end of file inside '{}'", path.join("|")),
                    ));
                }
                Tok::RBrace if !path.is_empty() => return Ok(nodes),
                Tok::RBrace => return Err(ConfigError::at(span, "unexpected closing brace")),
                Tok::Str(name) => name,
                other => {
                    return Err(ConfigError::at(
                        span,
                        format!("unexpected token {}", other.describe()),
                    ));
                }
            };
            let (tok, tspan) = self.next()?;
            match tok {
                Tok::Eq | Tok::PlusEq => {
                    let append = tok == Tok::PlusEq;
                    let (values, braces) = self.value(&name)?;
                    nodes.push(Node {
                        kind: NodeKind::Assign {
                            name,
                            values,
                            braces,
                            append,
                        },
                        span,
                    });
                }
                Tok::LParen => {
                    let args = self.args(&name)?;
                    if let Some(node) = self.call(name, args, span, path)? {
                        nodes.push(node);
                    }
                }
                Tok::LBrace => {
                    path.push(name.clone());
                    let body = self.block(path)?;
                    path.pop();
                    nodes.push(Node {
                        kind: NodeKind::Section {
                            name,
                            title: None,
                            body,
                        },
                        span,
                    });
                }
                Tok::Str(title) => {
                    let (open, ospan) = self.next()?;
                    if open != Tok::LBrace {
                        return Err(ConfigError::at(
                            ospan,
                            format!(
                                "expected '{{' after '{name} {title}', found {}",
                                open.describe()
                            ),
                        ));
                    }
                    path.push(name.clone());
                    let body = self.block(path)?;
                    path.pop();
                    if self.mode == Mode::Create && path.is_empty() && name == "file-resource" {
                        self.define_resource_size(&title, &body, &span);
                    }
                    nodes.push(Node {
                        kind: NodeKind::Section {
                            name,
                            title: Some(title),
                            body,
                        },
                        span,
                    });
                }
                other => {
                    return Err(ConfigError::at(
                        tspan,
                        format!(
                            "expected '=', '(' or '{{' after '{name}', found {}",
                            other.describe()
                        ),
                    ));
                }
            }
        }
    }

    fn value(&mut self, name: &str) -> Result<(Vec<String>, bool), ConfigError> {
        let (tok, span) = self.next()?;
        match tok {
            Tok::Str(v) => Ok((vec![v], false)),
            Tok::LBrace => {
                let mut values = Vec::new();
                if self.peek()?.0 == Tok::RBrace {
                    self.next()?;
                    return Ok((values, true));
                }
                loop {
                    let (tok, span) = self.next()?;
                    match tok {
                        Tok::Str(v) => values.push(v),
                        other => {
                            return Err(ConfigError::at(
                                span,
                                format!(
                                    "unexpected token {} in the list of '{name}'",
                                    other.describe()
                                ),
                            ));
                        }
                    }
                    let (tok, span) = self.next()?;
                    match tok {
                        Tok::Comma => continue,
                        Tok::RBrace => return Ok((values, true)),
                        other => {
                            return Err(ConfigError::at(
                                span,
                                format!(
                                    "expected ',' or '}}' in the list of '{name}', found {}",
                                    other.describe()
                                ),
                            ));
                        }
                    }
                }
            }
            other => Err(ConfigError::at(
                span,
                format!("missing value for '{name}', found {}", other.describe()),
            )),
        }
    }

    fn args(&mut self, name: &str) -> Result<Vec<String>, ConfigError> {
        let mut args = Vec::new();
        let (tok, span) = self.next()?;
        match tok {
            Tok::RParen => return Ok(args),
            Tok::Str(a) => args.push(a),
            other => {
                return Err(ConfigError::at(
                    span,
                    format!("syntax error in call of '{name}': {}", other.describe()),
                ));
            }
        }
        loop {
            let (tok, span) = self.next()?;
            match tok {
                Tok::RParen => return Ok(args),
                Tok::Comma => {}
                other => {
                    return Err(ConfigError::at(
                        span,
                        format!("syntax error in call of '{name}': {}", other.describe()),
                    ));
                }
            }
            let (tok, span) = self.next()?;
            match tok {
                Tok::Str(a) => args.push(a),
                other => {
                    return Err(ConfigError::at(
                        span,
                        format!("syntax error in call of '{name}': {}", other.describe()),
                    ));
                }
            }
        }
    }

    /// Runs a definition or include, or returns the call as a statement.
    fn call(
        &mut self,
        name: String,
        args: Vec<String>,
        span: Span,
        path: &[String],
    ) -> Result<Option<Node>, ConfigError> {
        let is_define = matches!(
            name.as_str(),
            "define" | "define!" | "define-eval" | "define-eval!"
        );
        if is_define || name == "include" {
            if self.mode == Mode::Meta {
                return Err(ConfigError::at(
                    span,
                    format!("'{name}' is not allowed in meta.conf"),
                ));
            }
        } else {
            return Ok(Some(Node {
                kind: NodeKind::Call { name, args },
                span,
            }));
        }
        if is_define {
            if !path.is_empty() {
                return Err(ConfigError::at(
                    span,
                    format!(
                        "'{name}' is only allowed at the top level, not in '{}'",
                        path.join("|")
                    ),
                ));
            }
            if args.len() != 2 {
                return Err(ConfigError::at(
                    span,
                    format!("'{name}' requires 2 parameters"),
                ));
            }
            let value = if name.starts_with("define-eval") {
                eval::eval(&args[1])
                    .map_err(|e| {
                        ConfigError::at(
                            span.clone(),
                            format!("error evaluating '{}': {e}", args[1]),
                        )
                    })?
                    .to_string()
            } else {
                args[1].clone()
            };
            let overriding = name.ends_with('!');
            if overriding || self.vars.get(&args[0]).is_none() {
                self.vars.set(&args[0], &value);
            }
            return Ok(None);
        }
        // include()
        let allowed = match path {
            [] => true,
            [s] => s == "file-resource" || s == "task",
            [t, e] => t == "task" && e.starts_with("on-"),
            _ => false,
        };
        if !allowed {
            return Err(ConfigError::at(
                span,
                format!("include() is not allowed inside '{}'", path.join("|")),
            ));
        }
        if args.len() != 1 {
            return Err(ConfigError::at(span, "include() requires 1 parameter"));
        }
        if args[0].is_empty() {
            return Err(ConfigError::at(
                span,
                "cannot include the contents of an undefined variable",
            ));
        }
        if self.stack.len() > MAX_INCLUDE_DEPTH {
            return Err(ConfigError::at(span, "includes nested too deeply"));
        }
        let target = relative_to(&span.file, &args[0]);
        let meta = std::fs::metadata(&target).map_err(|e| {
            ConfigError::at(span.clone(), format!("cannot include '{}': {e}", args[0]))
        })?;
        if !meta.is_file() {
            return Err(ConfigError::at(
                span,
                format!("cannot include '{}': not a regular file", args[0]),
            ));
        }
        let text = std::fs::read(&target).map_err(|e| {
            ConfigError::at(span.clone(), format!("cannot include '{}': {e}", args[0]))
        })?;
        // The token after `)` may already be buffered from the including file; the included
        // text must come first.
        let pending = self.peeked.take();
        if pending.is_some() {
            return Err(ConfigError::at(
                span,
                "internal error: include after lookahead",
            ));
        }
        self.stack.push(Lexer::new(
            text,
            Arc::from(target.to_string_lossy().as_ref()),
        ));
        Ok(None)
    }

    fn define_resource_size(&mut self, title: &str, body: &[Node], span: &Span) {
        let host_path = body.iter().rev().find_map(|n| match &n.kind {
            NodeKind::Assign { name, values, .. } if name == "host-path" => values.first(),
            _ => None,
        });
        let Some(host_path) = host_path else { return };
        let mut total = 0u64;
        for part in host_path.split(';').filter(|p| !p.is_empty()) {
            match std::fs::metadata(relative_to(&span.file, part)) {
                Ok(m) => total += m.len(),
                Err(_) => return,
            }
        }
        let key: String = format!("FWUP_SIZE_{title}")
            .chars()
            .map(|c| if matches!(c, '-' | '/' | '.') { '_' } else { c })
            .collect();
        self.vars.set(&key, &total.to_string());
    }
}

/// Resolves `path` as fwup does: absolute (or `~`) paths as they are, others relative to the
/// directory of `from_file`.
pub fn relative_to(from_file: &str, path: &str) -> PathBuf {
    if let Some(rest) = path.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return Path::new(&home).join(rest);
        }
    }
    let p = Path::new(path);
    if p.is_absolute() {
        return p.to_path_buf();
    }
    let dir = Path::new(from_file)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    dir.join(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str, vars: &mut Vars) -> Result<Vec<Node>, ConfigError> {
        Parser::new(src, "test.conf", vars, Mode::Create).parse()
    }

    #[test]
    fn statements_and_sections() {
        let mut vars = Vars::default();
        let nodes = parse(
            "a = 1\nlist = {x, \"y z\"}\nempty = {}\nsec t { inner = 2 f(1, 2) }\nplain { }",
            &mut vars,
        )
        .unwrap();
        assert_eq!(nodes.len(), 5);
        assert!(
            matches!(&nodes[1].kind, NodeKind::Assign { values, braces: true, .. } if values == &["x", "y z"])
        );
        assert!(
            matches!(&nodes[2].kind, NodeKind::Assign { values, braces: true, .. } if values.is_empty())
        );
        match &nodes[3].kind {
            NodeKind::Section { name, title, body } => {
                assert_eq!(name, "sec");
                assert_eq!(title.as_deref(), Some("t"));
                assert_eq!(body.len(), 2);
                assert!(
                    matches!(&body[1].kind, NodeKind::Call { name, args } if name == "f" && args == &["1", "2"])
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(nodes[3].span.line, 4);
    }

    #[test]
    fn defines_act_while_reading() {
        let mut vars = Vars::default();
        vars.set("OVERRIDE", "from-env");
        let nodes = parse(
            "define(A, 16)\ndefine(OVERRIDE, x)\ndefine-eval(B, \"${A} * 2 + 1\")\ndefine!(A, 3)\nv = \"${A}/${B}/${OVERRIDE}\"",
            &mut vars,
        )
        .unwrap();
        assert_eq!(nodes.len(), 1);
        assert!(
            matches!(&nodes[0].kind, NodeKind::Assign { values, .. } if values == &["3/33/from-env"])
        );
    }

    #[test]
    fn errors_name_file_and_line() {
        let mut vars = Vars::default();
        let e = parse("a = 1\nb {\n c = 2\n", &mut vars).unwrap_err();
        assert_eq!(
            e.to_string(),
            "test.conf:4: premature end of file inside 'b'"
        );
        let e = parse("a = 1\n}\n", &mut vars).unwrap_err();
        assert_eq!(e.to_string(), "test.conf:2: unexpected closing brace");
        let e = parse("x\n\ny", &mut vars).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("test.conf:3: expected '{' after 'x y'"),
            "{e}"
        );
        let e = parse("task t { define(A, 1) }", &mut vars).unwrap_err();
        assert!(
            e.to_string().contains("only allowed at the top level"),
            "{e}"
        );
        let e = parse("define-eval(A, \"1 +\")", &mut vars).unwrap_err();
        assert!(
            e.to_string().starts_with("test.conf:1: error evaluating"),
            "{e}"
        );
    }

    #[test]
    fn include_is_relative_to_the_including_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/inc.conf"), "define(X, 42)\nf(${X})\n").unwrap();
        let main = dir.path().join("main.conf");
        std::fs::write(
            &main,
            "task t { on-init { include(\"sub/inc.conf\") g(${X}) } }\n",
        )
        .unwrap();
        let mut vars = Vars::default();
        // define() inside an included file that lands in a section is refused.
        let e = Parser::new(
            std::fs::read(&main).unwrap(),
            main.to_str().unwrap(),
            &mut vars,
            Mode::Create,
        )
        .parse()
        .unwrap_err();
        assert!(e.to_string().contains("inc.conf:1:"), "{e}");

        std::fs::write(dir.path().join("sub/inc.conf"), "f(1)\nf(2)\n").unwrap();
        let nodes = Parser::new(
            std::fs::read(&main).unwrap(),
            main.to_str().unwrap(),
            &mut vars,
            Mode::Create,
        )
        .parse()
        .unwrap();
        let NodeKind::Section { body, .. } = &nodes[0].kind else {
            panic!()
        };
        let NodeKind::Section { body, .. } = &body[0].kind else {
            panic!()
        };
        assert_eq!(body.len(), 3);
        assert!(body[1].span.file.ends_with("inc.conf") && body[1].span.line == 2);
        assert_eq!(body[2].span.line, 1);

        let e = parse("include(\"/nonexistent/x.conf\")", &mut vars).unwrap_err();
        assert!(
            e.to_string().starts_with("test.conf:1: cannot include"),
            "{e}"
        );
        let e = parse("include(\"${UNSET}\")", &mut vars).unwrap_err();
        assert!(e.to_string().contains("undefined variable"), "{e}");
    }

    #[test]
    fn meta_mode_refuses_definitions() {
        let mut vars = Vars::default();
        let e = Parser::new("define(A, 1)", "meta.conf", &mut vars, Mode::Meta)
            .parse()
            .unwrap_err();
        assert!(e.to_string().contains("not allowed in meta.conf"));
    }
}
