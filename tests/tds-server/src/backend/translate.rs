//! T-SQL (as sqlparser's MsSqlDialect parses it) to SQLite: names resolved against the catalog
//! (Msg 208/207 as SQL Server words them), `TOP` to `LIMIT`, `@P1` parameters to `?1`,
//! CAST/CONVERT and date/time comparisons through the backend's conversion functions, T-SQL
//! functions to SQLite expressions, and the type SQL Server would report for every result
//! column. Anything outside this subset is refused with Msg 102 and the reason: a clear failure,
//! never rows from a half-understood statement.

use std::collections::BTreeSet;

use sqlparser::ast::{
    BinaryOperator, CastKind, DuplicateTreatment, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArguments, GroupByExpr, InTarget, Join, JoinConstraint, JoinOperator, ObjectName,
    ObjectNamePart, OrderByKind, OrderBySort, Query, Select, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, SetOperator, SetQuantifier, TableFactor,
    TableWithJoins, TopQuantity, UnaryOperator, Value as AstValue,
};

use super::Settings;
use super::catalog::{self, Catalog, Table};
use super::types::{
    self, Stored, is_character, is_code_page_text, is_temporal, quote_ident, quote_text,
    storage_collation, type_text, variant_stored,
};
use crate::model::{Collation, ColumnMeta, Param, ServerError, SqlType};

/// What the translator needs to know about the connection.
pub struct Context<'a> {
    pub catalog: &'a Catalog,
    pub settings: &'a Settings,
    pub params: &'a [Param],
    pub spid: i64,
    pub trancount: i64,
    pub lock_timeout: i64,
    pub text_size: i64,
    pub language: &'a str,
    pub server_name: &'a str,
    /// SET FMTONLY ON: only the result's columns are wanted, parameters may be missing.
    pub describe_only: bool,
}

/// A statement ready for SQLite.
#[derive(Debug)]
pub struct Translation {
    pub sql: String,
    pub columns: Vec<ColumnMeta>,
    /// Values bound to `?1`, `?2`, …
    pub binds: Vec<Stored>,
    /// The `sys` views the statement reads (refreshed before it runs).
    pub views: Vec<&'static str>,
    /// Tables whose histogram the statement asks for by `OBJECT_ID(…)`; `None`: any.
    pub histogram_tables: Option<Vec<i64>>,
    /// Whether the statement reads a user table (SNAPSHOT isolation is checked then).
    pub reads_user_tables: bool,
}

/// The server's answer to `@@VERSION`.
pub const VERSION: &str = "Microsoft SQL Server 2022 (RTM) - 16.0.1000.6 (X64) \n\tOct  8 2022 \
     05:58:25 \n\tCopyright (C) 2022 Microsoft Corporation\n\tDeveloper Edition (64-bit) on \
     Linux (ehi-sync TDS test server on SQLite)";

/// Rewrites `CHANGETABLE(CHANGES t, v)`, which sqlparser does not know, into the plain
/// table-valued function form `CHANGETABLE(t, v)` that it parses.
pub fn without_changes_keyword(sql: &str) -> String {
    let lower = sql.to_ascii_lowercase();
    let mut out = String::with_capacity(sql.len());
    let mut from = 0;
    while let Some(found) = lower[from..].find("changetable") {
        let at = from + found;
        let mut i = at + "changetable".len();
        let bytes = lower.as_bytes();
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < bytes.len() && bytes[i] == b'(' {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                j += 1;
            }
            if lower[j..].starts_with("changes")
                && lower[j + 7..].starts_with(|c: char| c.is_ascii_whitespace())
            {
                out.push_str(&sql[from..=i]);
                from = j + 7;
                continue;
            }
        }
        out.push_str(&sql[from..at + "changetable".len()]);
        from = at + "changetable".len();
    }
    out.push_str(&sql[from..]);
    out
}

fn unsupported(what: impl std::fmt::Display) -> ServerError {
    ServerError::syntax(format!("the TDS test server does not support {what}"))
}

/// An expression translated: SQLite text, SQL Server type, nullability, the column name it
/// reports (a column reference's name), and whether the text needs no parentheses.
#[derive(Debug, Clone)]
struct Typed {
    sql: String,
    ty: SqlType,
    nullable: bool,
    name: Option<String>,
    atomic: bool,
}

impl Typed {
    fn new(sql: String, ty: SqlType) -> Typed {
        Typed {
            sql,
            ty,
            nullable: true,
            name: None,
            atomic: false,
        }
    }

    fn atom(sql: String, ty: SqlType) -> Typed {
        Typed {
            atomic: true,
            ..Typed::new(sql, ty)
        }
    }

    fn wrapped(&self) -> String {
        if self.atomic {
            self.sql.clone()
        } else {
            format!("({})", self.sql)
        }
    }
}

/// Columns of a row source: name, type, nullable.
type Columns = Vec<(String, SqlType, bool)>;

/// A row source in FROM: its alias and columns.
#[derive(Debug, Clone)]
struct Source {
    alias: String,
    /// The table name as written, so `[dbo].[T].[c]` and `[T].[c]` resolve too.
    table: Option<String>,
    columns: Columns,
    outer_nullable: bool,
}

struct Scope<'p> {
    sources: Vec<Source>,
    parent: Option<&'p Scope<'p>>,
}

impl Scope<'_> {
    fn matching(&self, qualifier: Option<&str>) -> impl Iterator<Item = &Source> {
        self.sources.iter().filter(move |s| match qualifier {
            None => true,
            Some(q) => {
                s.alias.to_lowercase() == q.to_lowercase()
                    || s.table
                        .as_deref()
                        .is_some_and(|t| t.to_lowercase() == q.to_lowercase())
            }
        })
    }
}

struct Translator<'a> {
    ctx: &'a Context<'a>,
    binds: Vec<Stored>,
    bound: Vec<String>,
    views: BTreeSet<&'static str>,
    object_literals: Vec<i64>,
    reads_user_tables: bool,
    derived: usize,
    /// Common table expressions in scope: name and columns.
    ctes: Vec<(String, Columns)>,
}

/// Translates a SELECT (with UNION ALL, joins, subqueries) for SQLite.
pub fn translate(query: &Query, ctx: &Context<'_>) -> Result<Translation, ServerError> {
    let mut t = Translator::new(ctx);
    let (sql, outputs) = t.query(query, None)?;
    let columns = outputs
        .into_iter()
        .map(|o| ColumnMeta {
            name: o.name.unwrap_or_default(),
            ty: wire_type(o.ty),
            nullable: o.nullable,
        })
        .collect();
    let histogram_tables = (!t.object_literals.is_empty()).then_some(t.object_literals);
    Ok(Translation {
        sql,
        columns,
        binds: t.binds,
        views: t.views.into_iter().collect(),
        histogram_tables,
        reads_user_tables: t.reads_user_tables,
    })
}

/// Translates a condition (of `IF`) into `SELECT CASE WHEN cond THEN 1 ELSE 0 END`.
pub fn translate_condition(
    condition: &Expr,
    ctx: &Context<'_>,
) -> Result<Translation, ServerError> {
    let mut t = Translator::new(ctx);
    let scope = Scope {
        sources: Vec::new(),
        parent: None,
    };
    let cond = t.expr(condition, &scope)?;
    Ok(Translation {
        sql: format!("SELECT CASE WHEN {} THEN 1 ELSE 0 END", cond.wrapped()),
        columns: vec![ColumnMeta {
            name: String::new(),
            ty: SqlType::Int,
            nullable: false,
        }],
        binds: t.binds,
        views: t.views.into_iter().collect(),
        histogram_tables: None,
        reads_user_tables: t.reads_user_tables,
    })
}

/// Result column types restricted to collations the wire encodes.
fn wire_type(ty: SqlType) -> SqlType {
    let collation = |c: Collation| {
        let upper = c.0.to_ascii_uppercase();
        Collation(
            if upper.contains("UTF8") {
                "Latin1_General_100_CI_AS_SC_UTF8"
            } else if upper.contains("_BIN") {
                "Latin1_General_BIN2"
            } else {
                Collation::DEFAULT
            }
            .to_owned(),
        )
    };
    match ty {
        SqlType::Char {
            length,
            collation: c,
        } => SqlType::Char {
            length,
            collation: collation(c),
        },
        SqlType::VarChar {
            length,
            collation: c,
        } => SqlType::VarChar {
            length,
            collation: collation(c),
        },
        SqlType::Text { collation: c } => SqlType::Text {
            collation: collation(c),
        },
        other => other,
    }
}

/// SQL Server's data type precedence (higher converts the other side).
fn precedence(ty: &SqlType) -> u8 {
    match ty {
        SqlType::SqlVariant => 30,
        SqlType::Xml => 29,
        SqlType::DateTimeOffset { .. } => 28,
        SqlType::DateTime2 { .. } => 27,
        SqlType::DateTime => 26,
        SqlType::SmallDateTime => 25,
        SqlType::Date => 24,
        SqlType::Time { .. } => 23,
        SqlType::Float => 22,
        SqlType::Real => 21,
        SqlType::Decimal { .. } => 20,
        SqlType::Money => 19,
        SqlType::SmallMoney => 18,
        SqlType::BigInt => 17,
        SqlType::Int => 16,
        SqlType::SmallInt => 15,
        SqlType::TinyInt => 14,
        SqlType::Bit => 13,
        SqlType::NText => 12,
        SqlType::Text { .. } => 11,
        SqlType::Image => 10,
        SqlType::RowVersion => 9,
        SqlType::UniqueIdentifier => 8,
        SqlType::NVarChar { .. } => 7,
        SqlType::NChar { .. } => 6,
        SqlType::VarChar { .. } => 5,
        SqlType::Char { .. } => 4,
        SqlType::VarBinary { .. } => 3,
        SqlType::Binary { .. } => 2,
    }
}

/// The type of an expression combining `a` and `b` (CASE, COALESCE, UNION, arithmetic).
fn merge(a: &SqlType, b: &SqlType) -> SqlType {
    let longer = |x: Option<u16>, y: Option<u16>| match (x, y) {
        (Some(x), Some(y)) => Some(x.max(y)),
        _ => None,
    };
    match (a, b) {
        (SqlType::NVarChar { length: x }, SqlType::NVarChar { length: y }) => SqlType::NVarChar {
            length: longer(*x, *y),
        },
        (
            SqlType::VarChar {
                length: x,
                collation,
            },
            SqlType::VarChar { length: y, .. },
        ) => SqlType::VarChar {
            length: longer(*x, *y),
            collation: collation.clone(),
        },
        (
            SqlType::Decimal {
                precision: p1,
                scale: s1,
            },
            SqlType::Decimal {
                precision: p2,
                scale: s2,
            },
        ) => {
            let scale = (*s1).max(*s2);
            let int = (p1 - s1).max(p2 - s2);
            SqlType::Decimal {
                precision: (int + scale).min(38),
                scale,
            }
        }
        _ if precedence(b) > precedence(a) => b.clone(),
        _ => a.clone(),
    }
}

fn ident_parts(name: &ObjectName) -> Result<Vec<String>, ServerError> {
    name.0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(i) => Ok(i.value.clone()),
            other => Err(unsupported(format!("the name {other}"))),
        })
        .collect()
}

/// Splits a multi-part name as OBJECT_ID reads it: `[dbo].[PAT ENC]`, `dbo.T`, `T`.
fn split_name(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = text.trim().chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '[' => {
                while let Some(c) = chars.next() {
                    if c == ']' {
                        if chars.peek() == Some(&']') {
                            chars.next();
                            current.push(']');
                        } else {
                            break;
                        }
                    } else {
                        current.push(c);
                    }
                }
            }
            '"' => {
                while let Some(c) = chars.next() {
                    if c == '"' {
                        if chars.peek() == Some(&'"') {
                            chars.next();
                            current.push('"');
                        } else {
                            break;
                        }
                    } else {
                        current.push(c);
                    }
                }
            }
            '.' => parts.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    parts.push(current);
    parts
}

fn function_args(function: &Function) -> Result<(Vec<&FunctionArgExpr>, bool), ServerError> {
    match &function.args {
        FunctionArguments::None => Ok((Vec::new(), false)),
        FunctionArguments::List(list) => {
            if !list.clauses.is_empty() {
                return Err(unsupported(format!("the clauses of {}", function.name)));
            }
            let distinct = matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct));
            let args = list
                .args
                .iter()
                .map(|a| match a {
                    FunctionArg::Unnamed(e) => Ok(e),
                    other => Err(unsupported(format!("the argument {other}"))),
                })
                .collect::<Result<_, _>>()?;
            Ok((args, distinct))
        }
        FunctionArguments::Subquery(_) => Err(unsupported("a subquery as function argument")),
    }
}

fn string_literal(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Value(v) => match &v.value {
            AstValue::SingleQuotedString(s) | AstValue::NationalStringLiteral(s) => Some(s.clone()),
            _ => None,
        },
        Expr::Nested(e) => string_literal(e),
        _ => None,
    }
}

impl<'a> Translator<'a> {
    fn new(ctx: &'a Context<'a>) -> Translator<'a> {
        Translator {
            ctx,
            binds: Vec::new(),
            bound: Vec::new(),
            views: BTreeSet::new(),
            object_literals: Vec::new(),
            reads_user_tables: false,
            derived: 0,
            ctes: Vec::new(),
        }
    }

    fn collation(&self) -> &str {
        &self.ctx.settings.collation
    }

    fn query(
        &mut self,
        query: &Query,
        parent: Option<&Scope<'_>>,
    ) -> Result<(String, Vec<Typed>), ServerError> {
        let mut with = String::new();
        let ctes_before = self.ctes.len();
        if let Some(w) = &query.with {
            if w.recursive {
                return Err(unsupported("WITH RECURSIVE"));
            }
            let mut terms = Vec::new();
            for cte in &w.cte_tables {
                let (sql, outputs) = self.query(&cte.query, None)?;
                let name = cte.alias.name.value.clone();
                let mut columns: Columns = outputs
                    .into_iter()
                    .enumerate()
                    .map(|(i, o)| (o.name.unwrap_or_else(|| format!("_c{i}")), o.ty, o.nullable))
                    .collect();
                for (column, alias) in columns.iter_mut().zip(&cte.alias.columns) {
                    column.0 = alias.name.value.clone();
                }
                let names: Vec<String> = columns.iter().map(|c| quote_ident(&c.0)).collect();
                terms.push(format!(
                    "{}({}) AS ({sql})",
                    quote_ident(&name),
                    names.join(", ")
                ));
                self.ctes.push((name, columns));
            }
            with = format!("WITH {} ", terms.join(", "));
        }
        let result = self.query_body(query, parent);
        self.ctes.truncate(ctes_before);
        let (sql, outputs) = result?;
        Ok((format!("{with}{sql}"), outputs))
    }

    fn query_body(
        &mut self,
        query: &Query,
        parent: Option<&Scope<'_>>,
    ) -> Result<(String, Vec<Typed>), ServerError> {
        if query.limit_clause.is_some() || query.fetch.is_some() {
            return Err(unsupported("OFFSET/FETCH"));
        }
        if query.for_clause.is_some() || !query.locks.is_empty() {
            return Err(unsupported("FOR XML/JSON or locking clauses"));
        }
        let (mut sql, outputs, top, scope_sources) = match query.body.as_ref() {
            SetExpr::Select(select) => {
                let (sql, outputs, sources) = self.select(select, parent)?;
                let top = match &select.top {
                    None => None,
                    Some(top) if top.percent || top.with_ties => {
                        return Err(unsupported("TOP … PERCENT / WITH TIES"));
                    }
                    Some(top) => match &top.quantity {
                        Some(TopQuantity::Constant(n)) => Some(n.to_string()),
                        Some(TopQuantity::Expr(e)) => {
                            let empty = Scope {
                                sources: Vec::new(),
                                parent: None,
                            };
                            Some(self.expr(e, &empty)?.wrapped())
                        }
                        None => None,
                    },
                };
                (sql, outputs, top, sources)
            }
            other => {
                let (sql, outputs) = self.set_expr(other, parent)?;
                (sql, outputs, None, Vec::new())
            }
        };
        if let Some(order_by) = &query.order_by {
            let OrderByKind::Expressions(items) = &order_by.kind else {
                return Err(unsupported("ORDER BY ALL"));
            };
            let scope = Scope {
                sources: scope_sources,
                parent,
            };
            let mut terms = Vec::new();
            for item in items {
                let term = match &item.expr {
                    Expr::Identifier(ident)
                        if !ident.value.starts_with('@')
                            && outputs.iter().any(|o| {
                                o.name
                                    .as_deref()
                                    .is_some_and(|n| n.to_lowercase() == ident.value.to_lowercase())
                            }) =>
                    {
                        let name = outputs
                            .iter()
                            .filter_map(|o| o.name.as_deref())
                            .find(|n| n.to_lowercase() == ident.value.to_lowercase())
                            .unwrap_or_default();
                        quote_ident(name)
                    }
                    Expr::Value(v) if matches!(v.value, AstValue::Number(..)) => v.to_string(),
                    other => self.expr(other, &scope)?.wrapped(),
                };
                let direction = match item.options.sort {
                    Some(OrderBySort::Desc) => " DESC",
                    Some(OrderBySort::Asc) => " ASC",
                    Some(_) => return Err(unsupported("ORDER BY … USING")),
                    None => "",
                };
                terms.push(format!("{term}{direction}"));
            }
            sql.push_str(" ORDER BY ");
            sql.push_str(&terms.join(", "));
        }
        if let Some(top) = top {
            sql.push_str(&format!(" LIMIT {top}"));
        }
        Ok((sql, outputs))
    }

    fn set_expr(
        &mut self,
        body: &SetExpr,
        parent: Option<&Scope<'_>>,
    ) -> Result<(String, Vec<Typed>), ServerError> {
        match body {
            SetExpr::Select(select) => {
                if select.top.is_some() {
                    return Err(unsupported("TOP inside UNION"));
                }
                let (sql, outputs, _) = self.select(select, parent)?;
                Ok((sql, outputs))
            }
            SetExpr::Query(q) => {
                let (sql, outputs) = self.query(q, parent)?;
                Ok((format!("SELECT * FROM ({sql})"), outputs))
            }
            SetExpr::SetOperation {
                left,
                op,
                set_quantifier,
                right,
            } => {
                let (l, mut lo) = self.set_expr(left, parent)?;
                let (r, ro) = self.set_expr(right, parent)?;
                if lo.len() != ro.len() {
                    return Err(ServerError::new(
                        205,
                        1,
                        16,
                        "All queries combined using a UNION, INTERSECT or EXCEPT operator must \
                         have an equal number of expressions in their target lists.",
                    ));
                }
                for (a, b) in lo.iter_mut().zip(&ro) {
                    a.ty = merge(&a.ty, &b.ty);
                    a.nullable |= b.nullable;
                }
                let op = match (op, set_quantifier) {
                    (SetOperator::Union, SetQuantifier::All) => "UNION ALL",
                    (SetOperator::Union, _) => "UNION",
                    (SetOperator::Except, _) => "EXCEPT",
                    (SetOperator::Intersect, _) => "INTERSECT",
                    (other, _) => return Err(unsupported(other)),
                };
                Ok((format!("{l} {op} {r}"), lo))
            }
            other => Err(unsupported(format!("the statement body {other}"))),
        }
    }

    fn select(
        &mut self,
        select: &Select,
        parent: Option<&Scope<'_>>,
    ) -> Result<(String, Vec<Typed>, Vec<Source>), ServerError> {
        if select.into.is_some() {
            return Err(unsupported("SELECT … INTO"));
        }
        let mut scope = Scope {
            sources: Vec::new(),
            parent,
        };
        let mut from = Vec::new();
        for table in &select.from {
            from.push(self.table_with_joins(table, &mut scope)?);
        }
        let mut items = Vec::new();
        let mut outputs = Vec::new();
        for item in &select.projection {
            match item {
                SelectItem::UnnamedExpr(e) => {
                    let typed = self.expr(e, &scope)?;
                    outputs.push(typed);
                }
                SelectItem::ExprWithAlias { expr, alias } => {
                    let mut typed = self.expr(expr, &scope)?;
                    typed.name = Some(alias.value.clone());
                    outputs.push(typed);
                }
                SelectItem::Wildcard(_) => {
                    for source in &scope.sources {
                        outputs.extend(star(source));
                    }
                }
                SelectItem::QualifiedWildcard(
                    SelectItemQualifiedWildcardKind::ObjectName(n),
                    _,
                ) => {
                    let parts = ident_parts(n)?;
                    let qualifier = parts.last().cloned().unwrap_or_default();
                    let sources: Vec<&Source> = scope.matching(Some(&qualifier)).collect();
                    if sources.is_empty() {
                        return Err(ServerError::new(
                            4104,
                            1,
                            16,
                            format!("The multi-part identifier \"{n}\" could not be bound."),
                        ));
                    }
                    for source in sources {
                        outputs.extend(star(source));
                    }
                }
                other => return Err(unsupported(format!("the select item {other}"))),
            }
        }
        for (i, o) in outputs.iter().enumerate() {
            let alias = match &o.name {
                Some(n) => quote_ident(n),
                None => quote_ident(&format!("_c{i}")),
            };
            items.push(format!("{} AS {alias}", o.sql));
        }
        let mut sql = String::from("SELECT ");
        if select.distinct.is_some() {
            sql.push_str("DISTINCT ");
        }
        sql.push_str(&items.join(", "));
        if !from.is_empty() {
            sql.push_str(" FROM ");
            sql.push_str(&from.join(", "));
        }
        if let Some(selection) = &select.selection {
            sql.push_str(" WHERE ");
            sql.push_str(&self.expr(selection, &scope)?.sql);
        }
        match &select.group_by {
            GroupByExpr::Expressions(exprs, modifiers) => {
                if !modifiers.is_empty() {
                    return Err(unsupported("GROUP BY modifiers"));
                }
                if !exprs.is_empty() {
                    let terms: Vec<String> = exprs
                        .iter()
                        .map(|e| self.expr(e, &scope).map(|t| t.wrapped()))
                        .collect::<Result<_, _>>()?;
                    sql.push_str(" GROUP BY ");
                    sql.push_str(&terms.join(", "));
                }
            }
            GroupByExpr::All(_) => return Err(unsupported("GROUP BY ALL")),
        }
        if let Some(having) = &select.having {
            sql.push_str(" HAVING ");
            sql.push_str(&self.expr(having, &scope)?.sql);
        }
        Ok((sql, outputs, scope.sources))
    }

    fn table_with_joins(
        &mut self,
        table: &TableWithJoins,
        scope: &mut Scope<'_>,
    ) -> Result<String, ServerError> {
        let mut sql = self.factor(&table.relation, scope, None)?;
        for join in &table.joins {
            sql.push_str(&self.join(join, scope)?);
        }
        Ok(sql)
    }

    fn join(&mut self, join: &Join, scope: &mut Scope<'_>) -> Result<String, ServerError> {
        let (keyword, constraint, outer_right, outer_left) = match &join.join_operator {
            JoinOperator::Join(c) | JoinOperator::Inner(c) => ("JOIN", Some(c), false, false),
            JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => {
                ("LEFT JOIN", Some(c), true, false)
            }
            JoinOperator::Right(c) | JoinOperator::RightOuter(c) => {
                ("RIGHT JOIN", Some(c), false, true)
            }
            JoinOperator::FullOuter(c) => ("FULL JOIN", Some(c), true, true),
            JoinOperator::CrossJoin(c) => ("CROSS JOIN", Some(c), false, false),
            JoinOperator::CrossApply => {
                let factor = self.factor(&join.relation, scope, Some(false))?;
                return Ok(format!(" {factor}"));
            }
            JoinOperator::OuterApply => {
                let factor = self.factor(&join.relation, scope, Some(true))?;
                return Ok(format!(" {factor}"));
            }
            other => return Err(unsupported(format!("the join {other:?}"))),
        };
        if outer_left {
            for s in &mut scope.sources {
                s.outer_nullable = true;
            }
        }
        let factor = self.factor(&join.relation, scope, None)?;
        if outer_right && let Some(last) = scope.sources.last_mut() {
            last.outer_nullable = true;
        }
        let condition = match constraint {
            Some(JoinConstraint::On(e)) => format!(" ON {}", self.expr(e, scope)?.sql),
            Some(JoinConstraint::None) | None => String::new(),
            Some(other) => return Err(unsupported(format!("the join constraint {other:?}"))),
        };
        Ok(format!(" {keyword} {factor}{condition}"))
    }

    /// One FROM item. `apply` is `Some(outer)` under CROSS/OUTER APPLY: the table-valued
    /// function's arguments become the join condition.
    fn factor(
        &mut self,
        factor: &TableFactor,
        scope: &mut Scope<'_>,
        apply: Option<bool>,
    ) -> Result<String, ServerError> {
        match factor {
            TableFactor::Table {
                name, alias, args, ..
            } => {
                let parts = ident_parts(name)?;
                let alias_name = alias.as_ref().map(|a| a.name.value.clone());
                if let Some(args) = args {
                    return self.table_function(&parts, &args.args, alias_name, scope, apply);
                }
                if apply.is_some() {
                    return Err(unsupported("APPLY of a table"));
                }
                if let [single] = parts.as_slice()
                    && let Some((name, columns)) = self
                        .ctes
                        .iter()
                        .rev()
                        .find(|(n, _)| n.to_lowercase() == single.to_lowercase())
                        .cloned()
                {
                    let alias = alias_name.unwrap_or_else(|| name.clone());
                    scope.sources.push(Source {
                        alias: alias.clone(),
                        table: Some(name.clone()),
                        columns,
                        outer_nullable: false,
                    });
                    return Ok(format!("{} AS {}", quote_ident(&name), quote_ident(&alias)));
                }
                let (schema, table_name) = match parts.as_slice() {
                    [t] => ("dbo".to_owned(), t.clone()),
                    [s, t] => (s.clone(), t.clone()),
                    [db, s, t] if db.eq_ignore_ascii_case(&self.ctx.settings.database_name) => (
                        if s.is_empty() {
                            "dbo".to_owned()
                        } else {
                            s.clone()
                        },
                        t.clone(),
                    ),
                    _ => return Err(ServerError::invalid_object(&parts.join("."))),
                };
                let table = self.resolve_table(&schema, &table_name, &parts)?;
                let alias = alias_name.unwrap_or_else(|| table.name.clone());
                let sql = format!("{} AS {}", table.sqlite_name, quote_ident(&alias));
                scope.sources.push(Source {
                    alias,
                    table: Some(table.name.clone()),
                    columns: table
                        .columns
                        .iter()
                        .map(|c| (c.name.clone(), c.ty.clone(), c.nullable))
                        .collect(),
                    outer_nullable: false,
                });
                Ok(sql)
            }
            TableFactor::Derived {
                lateral,
                subquery,
                alias,
                ..
            } => {
                if *lateral || apply.is_some() {
                    return Err(unsupported("LATERAL / APPLY of a subquery"));
                }
                let (sql, outputs) = self.query(subquery, None)?;
                self.derived += 1;
                let alias = alias
                    .as_ref()
                    .map_or_else(|| format!("_d{}", self.derived), |a| a.name.value.clone());
                scope.sources.push(Source {
                    alias: alias.clone(),
                    table: None,
                    columns: outputs
                        .into_iter()
                        .enumerate()
                        .map(|(i, o)| {
                            (o.name.unwrap_or_else(|| format!("_c{i}")), o.ty, o.nullable)
                        })
                        .collect(),
                    outer_nullable: false,
                });
                Ok(format!("({sql}) AS {}", quote_ident(&alias)))
            }
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => Ok(format!(
                "({})",
                self.table_with_joins(table_with_joins, scope)?
            )),
            other => Err(unsupported(format!("the FROM item {other}"))),
        }
    }

    fn resolve_table(
        &mut self,
        schema: &str,
        name: &str,
        parts: &[String],
    ) -> Result<Table, ServerError> {
        if schema.eq_ignore_ascii_case("sys") || schema.eq_ignore_ascii_case("INFORMATION_SCHEMA") {
            let view = catalog::view(schema, name)
                .ok_or_else(|| ServerError::invalid_object(&parts.join(".")))?;
            if view.name.starts_with("dm_db_") && self.ctx.settings.deny_view_database_state {
                return Err(ServerError::new(
                    300,
                    1,
                    14,
                    format!(
                        "VIEW DATABASE STATE permission denied in database '{}'.",
                        self.ctx.settings.database_name
                    ),
                ));
            }
            self.views.insert(view.name);
            return Ok(catalog::view_table(view, self.collation()));
        }
        let table = self
            .ctx
            .catalog
            .find(schema, name)
            .ok_or_else(|| ServerError::invalid_object(&parts.join(".")))?;
        self.reads_user_tables = true;
        Ok(table.clone())
    }

    fn table_function(
        &mut self,
        parts: &[String],
        args: &[FunctionArg],
        alias: Option<String>,
        scope: &mut Scope<'_>,
        apply: Option<bool>,
    ) -> Result<String, ServerError> {
        let exprs: Vec<&Expr> = args
            .iter()
            .map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
                other => Err(unsupported(format!("the argument {other}"))),
            })
            .collect::<Result<_, _>>()?;
        let lower: Vec<String> = parts.iter().map(|p| p.to_lowercase()).collect();
        match lower.as_slice() {
            [f] if f == "changetable" => {
                if apply.is_some() {
                    return Err(unsupported("APPLY of CHANGETABLE"));
                }
                self.change_table(&exprs, alias, scope)
            }
            [s, f]
                if s == "sys"
                    && (f == "dm_db_stats_histogram" || f == "dm_db_stats_properties") =>
            {
                let table = self.resolve_table("sys", f, parts)?;
                let [object, stats] = exprs.as_slice() else {
                    return Err(ServerError::new(
                        174,
                        1,
                        15,
                        format!("The {f} function requires 2 argument(s)."),
                    ));
                };
                let alias = alias.unwrap_or_else(|| f.clone());
                let object = self.expr(object, scope)?;
                let stats = self.expr(stats, scope)?;
                scope.sources.push(Source {
                    alias: alias.clone(),
                    table: None,
                    columns: table
                        .columns
                        .iter()
                        .map(|c| (c.name.clone(), c.ty.clone(), true))
                        .collect(),
                    outer_nullable: false,
                });
                let quoted = quote_ident(&alias);
                Ok(match apply {
                    Some(outer) => format!(
                        "{} {} AS {quoted} ON {quoted}.\"object_id\" = {} AND \
                         {quoted}.\"stats_id\" = {}",
                        if outer { "LEFT JOIN" } else { "JOIN" },
                        table.sqlite_name,
                        object.wrapped(),
                        stats.wrapped()
                    ),
                    None => format!(
                        "(SELECT * FROM {} WHERE \"object_id\" = {} AND \"stats_id\" = {}) AS \
                         {quoted}",
                        table.sqlite_name,
                        object.wrapped(),
                        stats.wrapped()
                    ),
                })
            }
            _ => Err(unsupported(format!(
                "the table-valued function {}",
                parts.join(".")
            ))),
        }
    }

    /// `CHANGETABLE(CHANGES t, v)`: the keys changed after version `v`, from the table's change
    /// rows, with SQL Server's SYS_CHANGE_* columns.
    fn change_table(
        &mut self,
        args: &[&Expr],
        alias: Option<String>,
        scope: &mut Scope<'_>,
    ) -> Result<String, ServerError> {
        let [table_expr, version] = args else {
            return Err(unsupported(
                "CHANGETABLE other than CHANGETABLE(CHANGES table, version)",
            ));
        };
        let parts: Vec<String> = match table_expr {
            Expr::Identifier(i) => vec![i.value.clone()],
            Expr::CompoundIdentifier(ids) => ids.iter().map(|i| i.value.clone()).collect(),
            other => return Err(unsupported(format!("CHANGETABLE of {other}"))),
        };
        let (schema, name) = match parts.as_slice() {
            [t] => ("dbo".to_owned(), t.clone()),
            [s, t] => (s.clone(), t.clone()),
            _ => return Err(ServerError::invalid_object(&parts.join("."))),
        };
        let table = self.resolve_table(&schema, &name, &parts)?;
        let empty = Scope {
            sources: Vec::new(),
            parent: None,
        };
        let version = self.expr(version, &empty)?.wrapped();
        let side = format!(
            "main.{}",
            quote_ident(&format!("_tds_ct.{}.{}", table.schema, table.name))
        );
        let tracked = self
            .ctx
            .catalog
            .tables
            .iter()
            .any(|t| t.object_id == table.object_id)
            && self.ctx.change_tracked(table.object_id);
        if !tracked {
            return Err(ServerError::new(
                22105,
                1,
                16,
                format!(
                    "Change tracking is not enabled on table '{}.{}'.",
                    table.schema, table.name
                ),
            ));
        }
        let keys: Vec<String> = table.primary_key.iter().map(|k| quote_ident(k)).collect();
        let alias = alias.unwrap_or_else(|| "CHANGETABLE".to_owned());
        let mut columns: Columns = vec![
            ("SYS_CHANGE_VERSION".into(), SqlType::BigInt, true),
            ("SYS_CHANGE_CREATION_VERSION".into(), SqlType::BigInt, true),
            (
                "SYS_CHANGE_OPERATION".into(),
                SqlType::NChar { length: 1 },
                true,
            ),
            (
                "SYS_CHANGE_COLUMNS".into(),
                SqlType::VarBinary { length: Some(4100) },
                true,
            ),
            (
                "SYS_CHANGE_CONTEXT".into(),
                SqlType::VarBinary { length: Some(128) },
                true,
            ),
        ];
        for k in &table.primary_key {
            if let Some(c) = table.column(k) {
                columns.push((c.name.clone(), c.ty.clone(), false));
            }
        }
        scope.sources.push(Source {
            alias: alias.clone(),
            table: None,
            columns,
            outer_nullable: false,
        });
        Ok(format!(
            "(SELECT last_version AS \"SYS_CHANGE_VERSION\", CASE WHEN creation_version > \
             {version} THEN creation_version END AS \"SYS_CHANGE_CREATION_VERSION\", CASE WHEN \
             deleted = 1 THEN 'D' WHEN creation_version > {version} THEN 'I' ELSE 'U' END AS \
             \"SYS_CHANGE_OPERATION\", NULL AS \"SYS_CHANGE_COLUMNS\", NULL AS \
             \"SYS_CHANGE_CONTEXT\", {} FROM {side} WHERE last_version > {version}) AS {}",
            keys.join(", "),
            quote_ident(&alias)
        ))
    }

    fn column(
        &self,
        qualifier: Option<&str>,
        name: &str,
        scope: &Scope<'_>,
        written: &str,
    ) -> Result<Typed, ServerError> {
        let mut current = Some(scope);
        let mut qualifier_seen = false;
        while let Some(s) = current {
            let mut found: Vec<(&Source, &(String, SqlType, bool))> = Vec::new();
            for source in s.matching(qualifier) {
                qualifier_seen = true;
                let lower = name.to_lowercase();
                if let Some(c) = source.columns.iter().find(|c| c.0.to_lowercase() == lower) {
                    found.push((source, c));
                }
            }
            match found.as_slice() {
                [(source, (column, ty, nullable))] => {
                    return Ok(Typed {
                        sql: format!("{}.{}", quote_ident(&source.alias), quote_ident(column)),
                        ty: ty.clone(),
                        nullable: *nullable || source.outer_nullable,
                        name: Some(column.clone()),
                        atomic: true,
                    });
                }
                [] => current = s.parent,
                _ => {
                    return Err(ServerError::new(
                        209,
                        1,
                        16,
                        format!("Ambiguous column name '{name}'."),
                    ));
                }
            }
        }
        if qualifier.is_some() && !qualifier_seen {
            return Err(ServerError::new(
                4104,
                1,
                16,
                format!("The multi-part identifier \"{written}\" could not be bound."),
            ));
        }
        Err(ServerError::invalid_column(name))
    }

    fn parameter(&mut self, name: &str) -> Result<Typed, ServerError> {
        let found = self
            .ctx
            .params
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name));
        if found.is_none() && self.ctx.describe_only {
            return Ok(Typed::atom(
                "NULL".into(),
                SqlType::NVarChar { length: Some(4000) },
            ));
        }
        let param = found.ok_or_else(|| {
            ServerError::new(
                137,
                2,
                15,
                format!("Must declare the scalar variable \"{name}\"."),
            )
        })?;
        let slot = match self.bound.iter().position(|b| b.eq_ignore_ascii_case(name)) {
            Some(i) => i + 1,
            None => {
                let stored = types::store(&param.ty, &param.value).map_err(|e| {
                    ServerError::new(
                        8114,
                        5,
                        16,
                        format!(
                            "Error converting data type of parameter {name} to {}.",
                            e.target
                        ),
                    )
                })?;
                self.binds.push(stored);
                self.bound.push(name.to_owned());
                self.binds.len()
            }
        };
        Ok(Typed::atom(format!("?{slot}"), param.ty.clone()))
    }

    fn system_variable(&mut self, name: &str) -> Result<Typed, ServerError> {
        let ctx = self.ctx;
        Ok(match name.to_ascii_uppercase().as_str() {
            "@@VERSION" => {
                Typed::atom(quote_text(VERSION), SqlType::NVarChar { length: Some(300) })
            }
            "@@SPID" => Typed::atom(ctx.spid.to_string(), SqlType::SmallInt),
            "@@TRANCOUNT" => Typed::atom(ctx.trancount.to_string(), SqlType::Int),
            "@@LOCK_TIMEOUT" => Typed::atom(ctx.lock_timeout.to_string(), SqlType::Int),
            "@@TEXTSIZE" => Typed::atom(ctx.text_size.to_string(), SqlType::Int),
            "@@LANGUAGE" => Typed::atom(
                quote_text(ctx.language),
                SqlType::NVarChar { length: Some(128) },
            ),
            "@@SERVERNAME" | "@@SERVICENAME" => Typed::atom(
                quote_text(ctx.server_name),
                SqlType::NVarChar { length: Some(128) },
            ),
            "@@MAX_PRECISION" => Typed::atom("38".into(), SqlType::TinyInt),
            "@@ERROR" => Typed::atom("0".into(), SqlType::Int),
            "@@DBTS" => Typed::new(
                "(SELECT unhex(printf('%016X', value)) FROM main._tds_state WHERE name = \
                 'rowversion')"
                    .into(),
                SqlType::VarBinary { length: Some(8) },
            ),
            _ => return Err(unsupported(format!("the system function {name}"))),
        })
    }

    fn expr(&mut self, expr: &Expr, scope: &Scope<'_>) -> Result<Typed, ServerError> {
        match expr {
            Expr::Identifier(ident) => {
                let name = &ident.value;
                if ident.quote_style.is_none() && name.starts_with("@@") {
                    self.system_variable(name)
                } else if ident.quote_style.is_none() && name.starts_with('@') {
                    self.parameter(name)
                } else {
                    self.column(None, name, scope, name)
                }
            }
            Expr::CompoundIdentifier(ids) => {
                let parts: Vec<&str> = ids.iter().map(|i| i.value.as_str()).collect();
                let written = parts.join(".");
                match parts.as_slice() {
                    [q, c] => self.column(Some(q), c, scope, &written),
                    [.., t, c] => self.column(Some(t), c, scope, &written),
                    _ => Err(unsupported(format!("the name {written}"))),
                }
            }
            Expr::Value(v) => self.literal(&v.value),
            Expr::Nested(e) => {
                let inner = self.expr(e, scope)?;
                Ok(Typed {
                    sql: format!("({})", inner.sql),
                    atomic: true,
                    ..inner
                })
            }
            Expr::UnaryOp { op, expr } => {
                let inner = self.expr(expr, scope)?;
                let op = match op {
                    UnaryOperator::Minus => "-",
                    UnaryOperator::Plus => "+",
                    UnaryOperator::Not => "NOT ",
                    UnaryOperator::BitwiseNot => "~",
                    other => return Err(unsupported(format!("the operator {other}"))),
                };
                let ty = if op == "NOT " {
                    SqlType::Bit
                } else {
                    inner.ty.clone()
                };
                Ok(Typed::new(format!("{op}{}", inner.wrapped()), ty))
            }
            Expr::BinaryOp { left, op, right } => self.binary(left, op, right, scope),
            Expr::IsNull(e) => {
                let e = self.expr(e, scope)?;
                Ok(Typed::new(format!("{} IS NULL", e.wrapped()), SqlType::Bit))
            }
            Expr::IsNotNull(e) => {
                let e = self.expr(e, scope)?;
                Ok(Typed::new(
                    format!("{} IS NOT NULL", e.wrapped()),
                    SqlType::Bit,
                ))
            }
            Expr::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let e = self.expr(expr, scope)?;
                let low = self.expr(low, scope)?;
                let high = self.expr(high, scope)?;
                let low = coerce(&e, low);
                let high = coerce(&e, high);
                let e = unicode_rules(unicode_rules(e, &low.ty), &high.ty);
                Ok(Typed::new(
                    format!(
                        "{} {}BETWEEN {} AND {}",
                        e.wrapped(),
                        if *negated { "NOT " } else { "" },
                        low.wrapped(),
                        high.wrapped()
                    ),
                    SqlType::Bit,
                ))
            }
            Expr::In {
                expr,
                target,
                negated,
                ..
            } => {
                let e = self.expr(expr, scope)?;
                let not = if *negated { "NOT " } else { "" };
                let list = match target {
                    InTarget::List(items) => {
                        let mut terms = Vec::new();
                        for item in items {
                            let t = self.expr(item, scope)?;
                            terms.push(coerce(&e, t).wrapped());
                        }
                        terms.join(", ")
                    }
                    InTarget::Subquery(q) => self.query(q, Some(scope))?.0,
                    other => return Err(unsupported(format!("IN {other}"))),
                };
                Ok(Typed::new(
                    format!("{} {not}IN ({list})", e.wrapped()),
                    SqlType::Bit,
                ))
            }
            Expr::Like {
                negated,
                any: false,
                expr,
                pattern,
                escape_char,
            } => {
                let e = self.expr(expr, scope)?;
                let p = self.expr(pattern, scope)?;
                let escape = match escape_char {
                    Some(c) => format!(" ESCAPE {}", self.expr(c, scope)?.wrapped()),
                    None => String::new(),
                };
                Ok(Typed::new(
                    format!(
                        "{} {}LIKE {}{escape}",
                        e.wrapped(),
                        if *negated { "NOT " } else { "" },
                        p.wrapped()
                    ),
                    SqlType::Bit,
                ))
            }
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                let mut sql = String::from("CASE");
                let operand = match operand {
                    Some(o) => {
                        let o = self.expr(o, scope)?;
                        sql.push(' ');
                        sql.push_str(&o.wrapped());
                        Some(o)
                    }
                    None => None,
                };
                let mut ty: Option<SqlType> = None;
                for when in conditions {
                    let condition = self.expr(&when.condition, scope)?;
                    let condition = match &operand {
                        Some(o) => coerce(o, condition),
                        None => condition,
                    };
                    let result = self.expr(&when.result, scope)?;
                    ty = Some(match ty {
                        None => result.ty.clone(),
                        Some(t) => merge(&t, &result.ty),
                    });
                    sql.push_str(&format!(
                        " WHEN {} THEN {}",
                        condition.wrapped(),
                        result.wrapped()
                    ));
                }
                if let Some(e) = else_result {
                    let result = self.expr(e, scope)?;
                    ty = Some(match ty {
                        None => result.ty.clone(),
                        Some(t) => merge(&t, &result.ty),
                    });
                    sql.push_str(&format!(" ELSE {}", result.wrapped()));
                }
                sql.push_str(" END");
                Ok(Typed::atom(sql, ty.unwrap_or(SqlType::Int)))
            }
            Expr::Cast {
                kind,
                expr,
                data_type,
                format,
                ..
            } => {
                if format.is_some() {
                    return Err(unsupported("CAST … FORMAT"));
                }
                let target = self.data_type(data_type)?;
                let value = self.expr(expr, scope)?;
                let is_try = matches!(kind, CastKind::TryCast | CastKind::SafeCast);
                Ok(convert_expr(target, value, None, is_try))
            }
            Expr::Convert {
                is_try,
                expr,
                data_type,
                charset,
                styles,
                ..
            } => {
                if charset.is_some() {
                    return Err(unsupported("CONVERT … USING"));
                }
                let target = match data_type {
                    Some(dt) => self.data_type(dt)?,
                    None => return Err(unsupported("CONVERT without a type")),
                };
                let value = self.expr(expr, scope)?;
                let style = match styles.as_slice() {
                    [] => None,
                    [s] => match s {
                        Expr::Value(v) => match &v.value {
                            AstValue::Number(n, _) => n.parse::<i64>().ok(),
                            _ => None,
                        },
                        _ => None,
                    },
                    _ => return Err(unsupported("CONVERT with several styles")),
                };
                Ok(convert_expr(target, value, style, *is_try))
            }
            Expr::Collate { expr, collation } => {
                let inner = self.expr(expr, scope)?;
                let name = ident_parts(collation)?.join(".");
                let name = if name.eq_ignore_ascii_case("DATABASE_DEFAULT") {
                    self.collation().to_owned()
                } else {
                    name
                };
                let ty = match inner.ty.clone() {
                    SqlType::Char { length, .. } => SqlType::Char {
                        length,
                        collation: Collation(name.clone()),
                    },
                    SqlType::VarChar { length, .. } => SqlType::VarChar {
                        length,
                        collation: Collation(name.clone()),
                    },
                    SqlType::Text { .. } => SqlType::Text {
                        collation: Collation(name.clone()),
                    },
                    other => other,
                };
                let storage = storage_collation(&name, is_code_page_text(&inner.ty));
                Ok(Typed {
                    sql: format!("{} COLLATE {}", inner.wrapped(), quote_ident(&storage)),
                    ty,
                    atomic: false,
                    ..inner
                })
            }
            Expr::Function(f) => self.function(f, scope),
            Expr::Subquery(q) => {
                let (sql, outputs) = self.query(q, Some(scope))?;
                let ty = outputs.first().map_or(SqlType::Int, |o| o.ty.clone());
                Ok(Typed::atom(format!("({sql})"), ty))
            }
            Expr::Exists { subquery, negated } => {
                let (sql, _) = self.query(subquery, Some(scope))?;
                Ok(Typed::new(
                    format!("{}EXISTS ({sql})", if *negated { "NOT " } else { "" }),
                    SqlType::Bit,
                ))
            }
            other => Err(unsupported(format!("the expression {other}"))),
        }
    }

    fn literal(&mut self, value: &AstValue) -> Result<Typed, ServerError> {
        let collation = Collation(self.collation().to_owned());
        let chars = |s: &str| s.chars().count().clamp(1, 8000) as u16;
        Ok(match value {
            AstValue::Number(n, _) => {
                if n.contains(['e', 'E']) {
                    Typed::atom(n.clone(), SqlType::Float)
                } else if let Some((int, frac)) = n.split_once('.') {
                    let digits = int.trim_start_matches('0').len() + frac.len();
                    let ty = SqlType::Decimal {
                        precision: digits.clamp(1, 38) as u8,
                        scale: frac.len().min(38) as u8,
                    };
                    let sql = if digits > 15 {
                        quote_text(n)
                    } else {
                        n.clone()
                    };
                    Typed::atom(sql, ty)
                } else {
                    match n.parse::<i64>() {
                        Ok(i) if i32::try_from(i).is_ok() => Typed::atom(n.clone(), SqlType::Int),
                        Ok(_) => Typed::atom(
                            n.clone(),
                            SqlType::Decimal {
                                precision: n.len().min(38) as u8,
                                scale: 0,
                            },
                        ),
                        Err(_) => Typed::atom(
                            quote_text(n),
                            SqlType::Decimal {
                                precision: n.len().min(38) as u8,
                                scale: 0,
                            },
                        ),
                    }
                }
            }
            AstValue::SingleQuotedString(s) => Typed::atom(
                quote_text(s),
                SqlType::VarChar {
                    length: Some(chars(s)),
                    collation,
                },
            ),
            AstValue::NationalStringLiteral(s) => Typed::atom(
                quote_text(s),
                SqlType::NVarChar {
                    // UTF-16 code units, as nvarchar lengths count.
                    length: Some(s.encode_utf16().count().clamp(1, 4000) as u16),
                },
            ),
            AstValue::HexStringLiteral(h) => Typed::atom(
                format!(
                    "X'{}'",
                    if h.len() % 2 == 1 {
                        format!("0{h}")
                    } else {
                        h.clone()
                    }
                ),
                SqlType::VarBinary {
                    length: Some((h.len().div_ceil(2)).clamp(1, 8000) as u16),
                },
            ),
            AstValue::Null => Typed::atom("NULL".into(), SqlType::Int),
            other => return Err(unsupported(format!("the literal {other}"))),
        })
    }

    fn data_type(&self, data_type: &sqlparser::ast::DataType) -> Result<SqlType, ServerError> {
        let text = data_type.to_string();
        types::parse_type(&text, self.collation())
            .ok_or_else(|| unsupported(format!("the data type {text}")))
    }

    fn binary(
        &mut self,
        left: &Expr,
        op: &BinaryOperator,
        right: &Expr,
        scope: &Scope<'_>,
    ) -> Result<Typed, ServerError> {
        let l = self.expr(left, scope)?;
        let r = self.expr(right, scope)?;
        let comparison = |sym: &str| -> Typed {
            let (l, r) = coerce_pair(l.clone(), r.clone());
            Typed::new(
                format!("{} {sym} {}", l.wrapped(), r.wrapped()),
                SqlType::Bit,
            )
        };
        Ok(match op {
            BinaryOperator::Eq => comparison("="),
            BinaryOperator::NotEq => comparison("<>"),
            BinaryOperator::Lt => comparison("<"),
            BinaryOperator::LtEq => comparison("<="),
            BinaryOperator::Gt => comparison(">"),
            BinaryOperator::GtEq => comparison(">="),
            BinaryOperator::And => {
                Typed::new(format!("{} AND {}", l.wrapped(), r.wrapped()), SqlType::Bit)
            }
            BinaryOperator::Or => {
                Typed::new(format!("{} OR {}", l.wrapped(), r.wrapped()), SqlType::Bit)
            }
            BinaryOperator::Plus if is_character(&l.ty) || is_character(&r.ty) => {
                let ty = match (&l.ty, &r.ty) {
                    (SqlType::NVarChar { .. } | SqlType::NChar { .. }, _)
                    | (_, SqlType::NVarChar { .. } | SqlType::NChar { .. }) => {
                        SqlType::NVarChar { length: Some(4000) }
                    }
                    _ => SqlType::VarChar {
                        length: Some(8000),
                        collation: Collation(self.collation().to_owned()),
                    },
                };
                Typed::new(format!("{} || {}", l.wrapped(), r.wrapped()), ty)
            }
            BinaryOperator::Plus
            | BinaryOperator::Minus
            | BinaryOperator::Multiply
            | BinaryOperator::Divide
            | BinaryOperator::Modulo
            | BinaryOperator::BitwiseAnd
            | BinaryOperator::BitwiseOr => {
                let sym = match op {
                    BinaryOperator::Plus => "+",
                    BinaryOperator::Minus => "-",
                    BinaryOperator::Multiply => "*",
                    BinaryOperator::Divide => "/",
                    BinaryOperator::Modulo => "%",
                    BinaryOperator::BitwiseAnd => "&",
                    _ => "|",
                };
                Typed::new(
                    format!("{} {sym} {}", l.wrapped(), r.wrapped()),
                    merge(&l.ty, &r.ty),
                )
            }
            other => return Err(unsupported(format!("the operator {other}"))),
        })
    }

    fn args(
        &mut self,
        args: &[&FunctionArgExpr],
        scope: &Scope<'_>,
    ) -> Result<Vec<Typed>, ServerError> {
        args.iter()
            .map(|a| match a {
                FunctionArgExpr::Expr(e) => self.expr(e, scope),
                other => Err(unsupported(format!("the argument {other}"))),
            })
            .collect()
    }

    fn function(&mut self, f: &Function, scope: &Scope<'_>) -> Result<Typed, ServerError> {
        if f.over.is_some() || f.filter.is_some() || !f.within_group.is_empty() {
            return Err(unsupported(format!("window or filtered aggregates ({f})")));
        }
        let parts = ident_parts(&f.name)?;
        let (raw_args, distinct) = function_args(f)?;
        // `column.ToString()` on geography, geometry and hierarchyid.
        if parts.len() >= 2
            && parts
                .last()
                .is_some_and(|p| p.eq_ignore_ascii_case("ToString"))
            && raw_args.is_empty()
        {
            let qualifier = (parts.len() > 2).then(|| parts[parts.len() - 3].as_str());
            let column = &parts[parts.len() - 2];
            let c = self.column(qualifier, column, scope, &parts.join("."))?;
            return Ok(Typed {
                ty: SqlType::NVarChar { length: Some(4000) },
                name: None,
                ..c
            });
        }
        if parts.len() != 1 {
            return Err(unsupported(format!("the function {}", parts.join("."))));
        }
        let name = parts[0].to_ascii_uppercase();
        let arity = |n: usize| -> Result<(), ServerError> {
            if raw_args.len() == n {
                Ok(())
            } else {
                Err(ServerError::new(
                    174,
                    1,
                    15,
                    format!(
                        "The {} function requires {n} argument(s).",
                        parts[0].to_lowercase()
                    ),
                ))
            }
        };
        let distinct_sql = if distinct { "DISTINCT " } else { "" };
        match name.as_str() {
            "COUNT" | "COUNT_BIG" => {
                arity(1)?;
                let arg = match raw_args[0] {
                    FunctionArgExpr::Wildcard => "*".to_owned(),
                    other => self.args(&[other], scope)?.remove(0).sql,
                };
                let ty = if name == "COUNT" {
                    SqlType::Int
                } else {
                    SqlType::BigInt
                };
                let mut t = Typed::atom(format!("COUNT({distinct_sql}{arg})"), ty);
                t.nullable = false;
                return Ok(t);
            }
            "MIN" | "MAX" | "SUM" | "AVG" => {
                arity(1)?;
                let arg = self.args(&raw_args, scope)?.remove(0);
                let ty = match (name.as_str(), &arg.ty) {
                    ("MIN" | "MAX", t) => t.clone(),
                    (_, SqlType::TinyInt | SqlType::SmallInt | SqlType::Int | SqlType::Bit) => {
                        SqlType::Int
                    }
                    (_, SqlType::Decimal { scale, .. }) => SqlType::Decimal {
                        precision: 38,
                        scale: *scale,
                    },
                    (_, SqlType::Real) => SqlType::Float,
                    (_, t) => t.clone(),
                };
                return Ok(Typed::atom(
                    format!("{name}({distinct_sql}{})", arg.sql),
                    ty,
                ));
            }
            _ => {}
        }
        if distinct {
            return Err(unsupported(format!("DISTINCT in {name}")));
        }
        // Functions whose arguments are resolved at translation time.
        match name.as_str() {
            "OBJECT_ID" => {
                let text = match raw_args.first() {
                    Some(FunctionArgExpr::Expr(e)) => self.constant_text(e)?,
                    _ => None,
                };
                let Some(text) = text else {
                    return Err(unsupported(
                        "OBJECT_ID of anything but a literal or parameter",
                    ));
                };
                let parts = split_name(&text);
                let (schema, table) = match parts.as_slice() {
                    [t] => ("dbo", t.as_str()),
                    [s, t] => (if s.is_empty() { "dbo" } else { s.as_str() }, t.as_str()),
                    [_, s, t] => (if s.is_empty() { "dbo" } else { s.as_str() }, t.as_str()),
                    _ => ("", ""),
                };
                return Ok(match self.ctx.catalog.find(schema, table) {
                    Some(t) => {
                        self.object_literals.push(t.object_id);
                        Typed::atom(t.object_id.to_string(), SqlType::Int)
                    }
                    None => Typed::atom("NULL".into(), SqlType::Int),
                });
            }
            "DATABASEPROPERTYEX" | "SERVERPROPERTY" => {
                let property = match raw_args.last() {
                    Some(FunctionArgExpr::Expr(e)) => self.constant_text(e)?,
                    _ => None,
                }
                .unwrap_or_default();
                let value = self.property(&name, &property);
                return Ok(Typed::atom(
                    match value {
                        Some((ty, v)) => quote_text(&match variant_stored(&ty, &v) {
                            Stored::Text(t) => t,
                            _ => String::new(),
                        }),
                        None => "NULL".into(),
                    },
                    SqlType::SqlVariant,
                ));
            }
            "DATEADD" => {
                arity(3)?;
                let part = match raw_args[0] {
                    FunctionArgExpr::Expr(Expr::Identifier(i)) => i.value.clone(),
                    FunctionArgExpr::Expr(e) => self.constant_text(e)?.unwrap_or_default(),
                    _ => String::new(),
                };
                let args = self.args(&raw_args[1..], scope)?;
                let ty = if is_temporal(&args[1].ty) {
                    args[1].ty.clone()
                } else {
                    SqlType::DateTime
                };
                return Ok(Typed::atom(
                    format!(
                        "tds_dateadd({}, {}, {}, {})",
                        quote_text(&part),
                        args[0].sql,
                        args[1].sql,
                        quote_text(&type_text(&ty))
                    ),
                    ty,
                ));
            }
            _ => {}
        }
        let args = self.args(&raw_args, scope)?;
        let arg = |i: usize| args.get(i).map(|a| a.sql.clone()).unwrap_or_default();
        let ctx = self.ctx;
        let nvarchar128 = SqlType::NVarChar { length: Some(128) };
        let now = "strftime('%Y-%m-%d %H:%M:%f0000', 'now')";
        Ok(match name.as_str() {
            "ISNULL" => {
                arity(2)?;
                let fallback = coerce(&args[0], args[1].clone());
                Typed::atom(
                    format!("IFNULL({}, {})", arg(0), fallback.sql),
                    args[0].ty.clone(),
                )
            }
            "COALESCE" => {
                let ty = args.iter().skip(1).fold(
                    args.first().map_or(SqlType::Int, |a| a.ty.clone()),
                    |t, a| merge(&t, &a.ty),
                );
                let list: Vec<String> = args.iter().map(|a| a.sql.clone()).collect();
                Typed::atom(format!("COALESCE({})", list.join(", ")), ty)
            }
            "NULLIF" => {
                arity(2)?;
                Typed::atom(
                    format!("NULLIF({}, {})", arg(0), arg(1)),
                    args[0].ty.clone(),
                )
            }
            "IIF" => {
                arity(3)?;
                Typed::atom(
                    format!("CASE WHEN {} THEN {} ELSE {} END", arg(0), arg(1), arg(2)),
                    merge(&args[1].ty, &args[2].ty),
                )
            }
            "UPPER" | "LOWER" | "LTRIM" | "RTRIM" | "TRIM" | "ABS" | "REPLACE" => {
                let list: Vec<String> = args.iter().map(|a| a.sql.clone()).collect();
                let ty = args.first().map_or(SqlType::Int, |a| a.ty.clone());
                Typed::atom(format!("{name}({})", list.join(", ")), ty)
            }
            "LEN" => {
                arity(1)?;
                Typed::atom(format!("LENGTH(RTRIM({}, ' '))", arg(0)), SqlType::Int)
            }
            "DATALENGTH" => {
                arity(1)?;
                Typed::atom(format!("tds_datalength({})", arg(0)), SqlType::Int)
            }
            "SUBSTRING" => {
                arity(3)?;
                Typed::atom(
                    format!("SUBSTR({}, {}, {})", arg(0), arg(1), arg(2)),
                    args[0].ty.clone(),
                )
            }
            "LEFT" => {
                arity(2)?;
                Typed::atom(
                    format!("SUBSTR({}, 1, {})", arg(0), arg(1)),
                    args[0].ty.clone(),
                )
            }
            "RIGHT" => {
                arity(2)?;
                Typed::atom(
                    format!(
                        "CASE WHEN {1} <= 0 THEN '' ELSE SUBSTR({0}, -({1})) END",
                        arg(0),
                        arg(1)
                    ),
                    args[0].ty.clone(),
                )
            }
            "CHARINDEX" => {
                arity(2)?;
                Typed::atom(format!("INSTR({}, {})", arg(1), arg(0)), SqlType::Int)
            }
            "CONCAT" => {
                let list: Vec<String> = args
                    .iter()
                    .map(|a| format!("IFNULL({}, '')", a.sql))
                    .collect();
                Typed::new(list.join(" || "), SqlType::NVarChar { length: Some(4000) })
            }
            "DB_NAME" => {
                if args.is_empty() {
                    Typed::atom(quote_text(&ctx.settings.database_name), nvarchar128)
                } else {
                    Typed::atom(
                        format!(
                            "CASE {} WHEN 1 THEN 'master' WHEN 2 THEN 'tempdb' WHEN 3 THEN 'model' \
                             WHEN 4 THEN 'msdb' WHEN 5 THEN {} END",
                            arg(0),
                            quote_text(&ctx.settings.database_name)
                        ),
                        nvarchar128,
                    )
                }
            }
            "DB_ID" => {
                if args.is_empty() {
                    Typed::atom("5".into(), SqlType::SmallInt)
                } else {
                    Typed::atom(
                        format!(
                            "CASE LOWER({}) WHEN 'master' THEN 1 WHEN 'tempdb' THEN 2 WHEN \
                             'model' THEN 3 WHEN 'msdb' THEN 4 WHEN LOWER({}) THEN 5 END",
                            arg(0),
                            quote_text(&ctx.settings.database_name)
                        ),
                        SqlType::SmallInt,
                    )
                }
            }
            "SCHEMA_NAME" | "SCHEMA_ID" => {
                let schemas = ctx.catalog.schemas();
                let (input, when): (String, Vec<String>) = if name == "SCHEMA_NAME" {
                    (
                        if args.is_empty() { "1".into() } else { arg(0) },
                        schemas
                            .iter()
                            .map(|(id, s)| format!("WHEN {id} THEN {}", quote_text(s)))
                            .collect(),
                    )
                } else {
                    (
                        if args.is_empty() {
                            "'dbo'".into()
                        } else {
                            format!("LOWER({})", arg(0))
                        },
                        schemas
                            .iter()
                            .map(|(id, s)| {
                                format!("WHEN {} THEN {id}", quote_text(&s.to_lowercase()))
                            })
                            .collect(),
                    )
                };
                let ty = if name == "SCHEMA_NAME" {
                    nvarchar128
                } else {
                    SqlType::Int
                };
                Typed::atom(format!("CASE {input} {} END", when.join(" ")), ty)
            }
            "OBJECT_NAME" | "OBJECT_SCHEMA_NAME" => {
                let when: Vec<String> = ctx
                    .catalog
                    .tables
                    .iter()
                    .map(|t| {
                        let value = if name == "OBJECT_NAME" {
                            &t.name
                        } else {
                            &t.schema
                        };
                        format!("WHEN {} THEN {}", t.object_id, quote_text(value))
                    })
                    .collect();
                if when.is_empty() {
                    Typed::atom("NULL".into(), nvarchar128)
                } else {
                    Typed::atom(
                        format!("CASE {} {} END", arg(0), when.join(" ")),
                        nvarchar128,
                    )
                }
            }
            "SQL_VARIANT_PROPERTY" => {
                arity(2)?;
                Typed::atom(
                    format!("tds_variant_property({}, {})", arg(0), arg(1)),
                    SqlType::SqlVariant,
                )
            }
            "CHANGE_TRACKING_CURRENT_VERSION" => {
                arity(0)?;
                Typed::atom(
                    "(SELECT CASE WHEN EXISTS (SELECT 1 FROM main._tds_state WHERE name = \
                     'change_tracking') THEN (SELECT value FROM main._tds_state WHERE name = \
                     'ct_version') END)"
                        .into(),
                    SqlType::BigInt,
                )
            }
            "CHANGE_TRACKING_MIN_VALID_VERSION" if ctx.settings.deny_view_change_tracking => {
                arity(1)?;
                Typed::atom("NULL".into(), SqlType::BigInt)
            }
            "CHANGE_TRACKING_MIN_VALID_VERSION" => {
                arity(1)?;
                Typed::atom(
                    format!(
                        "(SELECT min_valid_version FROM main._tds_ct_tables WHERE object_id = {})",
                        args[0].wrapped()
                    ),
                    SqlType::BigInt,
                )
            }
            "MIN_ACTIVE_ROWVERSION" => {
                arity(0)?;
                Typed::atom(
                    "(SELECT unhex(printf('%016X', value + 1)) FROM main._tds_state WHERE name = \
                     'rowversion')"
                        .into(),
                    SqlType::Binary { length: 8 },
                )
            }
            "GETDATE" | "CURRENT_TIMESTAMP" | "GETUTCDATE" => {
                Typed::atom(now.into(), SqlType::DateTime)
            }
            "SYSDATETIME" | "SYSUTCDATETIME" => {
                Typed::atom(now.into(), SqlType::DateTime2 { scale: 7 })
            }
            "SYSDATETIMEOFFSET" => Typed::atom(
                format!("{now} || ' +00:00'"),
                SqlType::DateTimeOffset { scale: 7 },
            ),
            _ => return Err(unsupported(format!("the function {}", parts[0]))),
        })
    }

    /// The text of a literal or of a parameter's value, for functions that look names up.
    fn constant_text(&mut self, expr: &Expr) -> Result<Option<String>, ServerError> {
        if let Some(s) = string_literal(expr) {
            return Ok(Some(s));
        }
        if let Expr::Identifier(i) = expr
            && i.quote_style.is_none()
            && i.value.starts_with('@')
            && !i.value.starts_with("@@")
        {
            let param = self
                .ctx
                .params
                .iter()
                .find(|p| p.name.eq_ignore_ascii_case(&i.value))
                .ok_or_else(|| {
                    ServerError::new(
                        137,
                        2,
                        15,
                        format!("Must declare the scalar variable \"{}\".", i.value),
                    )
                })?;
            return Ok(match &param.value {
                crate::model::Value::Text(t) => Some(t.clone()),
                _ => None,
            });
        }
        Ok(None)
    }

    fn property(&self, function: &str, property: &str) -> Option<(SqlType, Stored)> {
        let settings = self.ctx.settings;
        let text = |t: &str| {
            Some((
                SqlType::NVarChar { length: Some(128) },
                Stored::Text(t.to_owned()),
            ))
        };
        let int = |i: i64| Some((SqlType::Int, Stored::Integer(i)));
        match (function, property.to_ascii_lowercase().as_str()) {
            (_, "collation") => text(&settings.collation),
            ("DATABASEPROPERTYEX", "status") => text("ONLINE"),
            ("DATABASEPROPERTYEX", "updateability") => text("READ_WRITE"),
            ("DATABASEPROPERTYEX", "useraccess") => text("MULTI_USER"),
            ("DATABASEPROPERTYEX", "recovery") => text("FULL"),
            ("DATABASEPROPERTYEX", "version") => int(957),
            ("SERVERPROPERTY", "productversion") => text("16.0.1000.6"),
            ("SERVERPROPERTY", "productmajorversion") => text("16"),
            ("SERVERPROPERTY", "productlevel") => text("RTM"),
            ("SERVERPROPERTY", "edition") => text("Developer Edition (64-bit)"),
            ("SERVERPROPERTY", "engineedition") => int(3),
            ("SERVERPROPERTY", "servername" | "machinename" | "instancename") => {
                text(self.ctx.server_name)
            }
            ("SERVERPROPERTY", "ishadrenabled" | "isclustered" | "issingleuser") => int(0),
            _ => None,
        }
    }
}

impl Context<'_> {
    fn change_tracked(&self, object_id: i64) -> bool {
        self.catalog.tracked.contains(&object_id)
    }
}

fn star(source: &Source) -> Vec<Typed> {
    source
        .columns
        .iter()
        .map(|(name, ty, nullable)| Typed {
            sql: format!("{}.{}", quote_ident(&source.alias), quote_ident(name)),
            ty: ty.clone(),
            nullable: *nullable || source.outer_nullable,
            name: Some(name.clone()),
            atomic: true,
        })
        .collect()
}

/// CAST/CONVERT: through `tds_convert`, or the value itself when the type does not change.
fn convert_expr(target: SqlType, value: Typed, style: Option<i64>, is_try: bool) -> Typed {
    if value.ty == target && style.is_none() {
        return Typed {
            name: None,
            ..value
        };
    }
    Typed::atom(
        format!(
            "tds_convert({}, {}, {}, {}, {})",
            quote_text(&type_text(&target)),
            quote_text(&type_text(&value.ty)),
            value.sql,
            style.map_or("NULL".to_owned(), |s| s.to_string()),
            i64::from(is_try)
        ),
        target,
    )
}

/// The other side of a comparison with a date/time value, converted to its type when their
/// stored texts differ in form (a date against a datetime, a string against either): stored
/// date/time texts compare as times only in the same form. `datetime`, `smalldatetime` and
/// `datetime2` share one form, so a key compared with a parameter of another of them keeps its
/// index.
fn coerce(reference: &Typed, other: Typed) -> Typed {
    fn form(ty: &SqlType) -> Option<u8> {
        match ty {
            SqlType::Date => Some(1),
            SqlType::Time { .. } => Some(2),
            SqlType::DateTime | SqlType::SmallDateTime | SqlType::DateTime2 { .. } => Some(3),
            SqlType::DateTimeOffset { .. } => Some(4),
            _ => None,
        }
    }
    let differs = form(&reference.ty).is_some() && form(&other.ty) != form(&reference.ty);
    if differs && precedence(&other.ty) <= precedence(&reference.ty) {
        convert_expr(reference.ty.clone(), other, None, false)
    } else {
        other
    }
}

fn coerce_pair(l: Typed, r: Typed) -> (Typed, Typed) {
    let (l, r) = if precedence(&l.ty) >= precedence(&r.ty) {
        let r = coerce(&l, r);
        (l, r)
    } else {
        let l = coerce(&r, l);
        (l, r)
    };
    let l_ty = l.ty.clone();
    let l = unicode_rules(l, &r.ty);
    let r = unicode_rules(r, &l_ty);
    (l, r)
}

/// A `varchar` compared with an `nvarchar` is converted to `nvarchar` (data type precedence),
/// and so compared by its collation's Unicode rules, not its code-page rules: under a SQL_
/// collation they order hyphens differently.
fn unicode_rules(text: Typed, other: &SqlType) -> Typed {
    let unicode = matches!(
        other,
        SqlType::NChar { .. } | SqlType::NVarChar { .. } | SqlType::NText
    );
    let collation = match &text.ty {
        SqlType::Char { collation, .. }
        | SqlType::VarChar { collation, .. }
        | SqlType::Text { collation } => collation.0.clone(),
        _ => return text,
    };
    if !unicode {
        return text;
    }
    Typed {
        sql: format!("{} COLLATE {}", text.wrapped(), quote_ident(&collation)),
        atomic: false,
        ..text
    }
}
