//! The import-order test: every top-level module of the library imports only from the layers
//! below its own (ARCHITECTURE.md, "Module map"), so the dependencies between stages of the data
//! flow point one way and no import circle can form.
//!
//! Every `crate::…` path of `src/` counts: `use` declarations, paths in code, and paths inside
//! macro calls (`format!`, `log::warn!`, ...), test modules included.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// Bottom to top. A module may import from the layers before its own, never from its own layer
/// or a later one. Keep this list and ARCHITECTURE.md's module map the same.
const LAYERS: &[&[&str]] = &[
    &["model", "display", "shutdown"],
    &["error"],
    &["durable"],
    &["config", "lock"],
    &["source"],
    &["state", "retry"],
    &["manifest"],
    &["plan", "progress", "ddl"],
    &["incremental"],
    &["sink"],
    &["extract"],
    &["supervisor"],
    &["status", "demo"],
    &["commands"],
];

#[test]
fn top_level_modules_import_only_from_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let layer_of: BTreeMap<&str, usize> = LAYERS
        .iter()
        .enumerate()
        .flat_map(|(layer, modules)| modules.iter().map(move |m| (*m, layer)))
        .collect();
    let imports = imports_by_module(&src);

    let declared: BTreeSet<&str> = layer_of.keys().copied().collect();
    let found: BTreeSet<&str> = imports.keys().map(String::as_str).collect();
    assert_eq!(
        found, declared,
        "every top-level module of src/ must have a layer in LAYERS (and ARCHITECTURE.md)"
    );

    let mut violations = Vec::new();
    for (module, targets) in &imports {
        let own = layer_of[module.as_str()];
        for (target, files) in targets {
            match layer_of.get(target.as_str()) {
                Some(&layer) if layer < own => {}
                Some(_) => violations.push(format!(
                    "{module} imports {target} (same or higher layer) in {}",
                    files.iter().cloned().collect::<Vec<_>>().join(", ")
                )),
                None => {}
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports against the layer order of ARCHITECTURE.md:\n  {}",
        violations.join("\n  ")
    );
}

#[test]
fn the_scan_sees_every_kind_of_path() {
    let source = r#"
        use crate::model::{Tier, Format};
        use crate::{display, error::Error};
        fn f() -> crate::config::Config {
            log::warn!("{}", crate::source::name());
            let _ = crate::plan::partition::split(1, 2, 3);
            todo!()
        }
    "#;
    let mut found = BTreeSet::new();
    let file = syn::parse_file(source).expect("parses");
    CratePaths { found: &mut found }.visit_file(&file);
    let expected: BTreeSet<String> = ["config", "display", "error", "model", "plan", "source"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(found, expected);
}

/// For each top-level module, the modules it names and the files that name them.
fn imports_by_module(src: &Path) -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let mut out: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in rust_files(src) {
        let relative = file.strip_prefix(src).expect("below src");
        let first = relative
            .components()
            .next()
            .expect("a path")
            .as_os_str()
            .to_string_lossy()
            .into_owned();
        let module = first.trim_end_matches(".rs").to_owned();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("readable source");
        let parsed = syn::parse_file(&text)
            .unwrap_or_else(|e| panic!("{} does not parse: {e}", file.display()));
        let mut found = BTreeSet::new();
        CratePaths { found: &mut found }.visit_file(&parsed);
        let targets = out.entry(module.clone()).or_default();
        for target in found.into_iter().filter(|t| *t != module) {
            targets
                .entry(target)
                .or_default()
                .insert(relative.display().to_string());
        }
    }
    out
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("readable folder") {
        let path = entry.expect("readable entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Collects the module after `crate::` of every path in a file.
struct CratePaths<'a> {
    found: &'a mut BTreeSet<String>,
}

impl CratePaths<'_> {
    fn use_tree(&mut self, tree: &syn::UseTree, after_crate: bool) {
        match tree {
            syn::UseTree::Path(path) if after_crate => {
                self.found.insert(path.ident.to_string());
            }
            syn::UseTree::Path(path) => self.use_tree(&path.tree, path.ident == "crate"),
            syn::UseTree::Name(name) if after_crate => {
                self.found.insert(name.ident.to_string());
            }
            syn::UseTree::Rename(rename) if after_crate => {
                self.found.insert(rename.ident.to_string());
            }
            syn::UseTree::Group(group) => {
                for tree in &group.items {
                    self.use_tree(tree, after_crate);
                }
            }
            _ => {}
        }
    }

    /// `crate :: name` in a macro's tokens, at any depth.
    fn tokens(&mut self, tokens: TokenStream) {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        for (i, token) in tokens.iter().enumerate() {
            match token {
                TokenTree::Group(group) => self.tokens(group.stream()),
                TokenTree::Ident(ident) if ident == "crate" => {
                    if let (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b))) =
                        (tokens.get(i + 1), tokens.get(i + 2))
                        && a.as_char() == ':'
                        && b.as_char() == ':'
                        && let Some(TokenTree::Ident(name)) = tokens.get(i + 3)
                    {
                        self.found.insert(name.to_string());
                    }
                }
                _ => {}
            }
        }
    }
}

impl<'ast> Visit<'ast> for CratePaths<'_> {
    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.use_tree(&item.tree, false);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let mut segments = path.segments.iter();
        if let (Some(first), Some(second)) = (segments.next(), segments.next())
            && first.ident == "crate"
        {
            self.found.insert(second.ident.to_string());
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.tokens(mac.tokens.clone());
        syn::visit::visit_macro(self, mac);
    }
}
