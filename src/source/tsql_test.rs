//! Test support: every T-SQL statement the program generates is parsed with sqlparser's
//! MsSqlDialect, because no SQL Server runs where this is built.

use sqlparser::ast::{ObjectNamePart, SetExpr, Statement, TableFactor};
use sqlparser::dialect::MsSqlDialect;
use sqlparser::parser::Parser;

fn parse_one(sql: &str) -> Statement {
    let mut statements = Parser::parse_sql(&MsSqlDialect {}, sql)
        .unwrap_or_else(|e| panic!("MsSqlDialect rejects the statement: {e}\n{sql}"));
    assert_eq!(statements.len(), 1, "expected one statement: {sql}");
    statements.remove(0)
}

/// Parses one statement and returns sqlparser's rendering of it, to pin against the text.
pub(crate) fn parse(sql: &str) -> String {
    parse_one(sql).to_string()
}

/// The unquoted name parts of every table in the FROM clauses of the statement, in order. Checks
/// quoting where the rendering cannot: sqlparser prints `[a]]b]` back as `[a]b]`.
pub(crate) fn table_names(sql: &str) -> Vec<Vec<String>> {
    fn collect(body: &SetExpr, out: &mut Vec<Vec<String>>) {
        match body {
            SetExpr::Select(select) => {
                for from in &select.from {
                    if let TableFactor::Table { name, .. } = &from.relation {
                        out.push(
                            name.0
                                .iter()
                                .map(|part| match part {
                                    ObjectNamePart::Identifier(ident) => ident.value.clone(),
                                    other => other.to_string(),
                                })
                                .collect(),
                        );
                    }
                }
            }
            SetExpr::SetOperation { left, right, .. } => {
                collect(left, out);
                collect(right, out);
            }
            SetExpr::Query(query) => collect(&query.body, out),
            _ => {}
        }
    }
    let Statement::Query(query) = parse_one(sql) else {
        panic!("not a query: {sql}");
    };
    let mut out = Vec::new();
    collect(&query.body, &mut out);
    out
}
