//! The `filter` and `order` mini-languages of paginated lists (spec §7.3), parsed as the
//! original parses them and translated into SQL conditions over a table of known fields.
//!
//! Filter grammar (the original's, with its precedence: `&` and `|` bind equally and group to
//! the right, `!` negates everything after it):
//!
//! ```text
//! expr   := "!" expr | term (("&" | "|") expr)?
//! term   := "(" expr ")" | NAME OP value
//! OP     := "==" | "!=" | ">" | ">=" | "<" | "<=" | "contains" | "in" | "isnot" | "is"
//!         | "like" | "ilike"
//! value  := "\"string\"" | number | "null" | "true" | "false" | "[" value ("," value)* "]"
//! ```
//!
//! e.g. `name ilike "%train%" & status == "RUNNING"`. Order: a comma-separated list of field
//! names, each optionally prefixed by `+` (ascending, the default) or `-` (descending), e.g.
//! `-created_at,name`.
//!
//! [`FieldSpec`] tables say which fields a list supports and how each maps to SQL; a field
//! that is not in the table, or an operator that does not fit the field, is an error naming
//! it (the GraphQL layer reports it as a GraphQL error).

use std::fmt;

use sea_orm::sea_query::{Alias, Expr, Func, IntoColumnRef, IntoIden, LikeExpr, Query, SimpleExpr, Value};
use sea_orm::DbBackend;

use super::scalars::parse_datetime;

/// A literal in a filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `"text"`.
    Str(String),
    /// An integer.
    Int(i64),
    /// A number with a fraction or an exponent.
    Float(f64),
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// `[a, b, …]`.
    Array(Vec<Literal>),
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Str(s) => write!(f, "{s:?}"),
            Literal::Int(i) => write!(f, "{i}"),
            Literal::Float(x) => write!(f, "{x}"),
            Literal::Null => f.write_str("null"),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Array(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
        }
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `contains`: the text contains the value.
    Contains,
    /// `in`: equal to one of an array's items.
    In,
    /// `isnot`
    IsNot,
    /// `is`
    Is,
    /// `like` (SQL `LIKE` pattern).
    Like,
    /// `ilike` (case-insensitive `LIKE`).
    ILike,
}

impl Op {
    fn from_token(token: &str) -> Option<Op> {
        Some(match token {
            "==" => Op::Eq,
            "!=" => Op::Ne,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "<" => Op::Lt,
            "<=" => Op::Le,
            "contains" => Op::Contains,
            "in" => Op::In,
            "isnot" => Op::IsNot,
            "is" => Op::Is,
            "like" => Op::Like,
            "ilike" => Op::ILike,
            _ => return None,
        })
    }

    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Contains => "contains",
            Op::In => "in",
            Op::IsNot => "isnot",
            Op::Is => "is",
            Op::Like => "like",
            Op::ILike => "ilike",
        }
    }
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `field op value`.
    Compare {
        /// The field name.
        field: String,
        /// The operator.
        op: Op,
        /// The value.
        value: Literal,
    },
    /// `! expr`.
    Not(Box<Filter>),
    /// `a & b`.
    And(Box<Filter>, Box<Filter>),
    /// `a | b`.
    Or(Box<Filter>, Box<Filter>),
}

/// One key of an ordering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderKey {
    /// The field name.
    pub field: String,
    /// `-field`.
    pub descending: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Name(String),
    Str(String),
    Number(String),
    Symbol(&'static str),
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Name(n) => write!(f, "`{n}`"),
            Token::Str(s) => write!(f, "\"{s}\""),
            Token::Number(n) => write!(f, "`{n}`"),
            Token::Symbol(s) => write!(f, "`{s}`"),
        }
    }
}

const SYMBOLS: [&str; 16] = ["==", "!=", ">=", "<=", ">", "<", "!", "&", "|", "(", ")", "[", "]", ",", "+", "-"];

fn tokenize(text: &str, what: &str) -> Result<Vec<(usize, Token)>, String> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    'outer: while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'"' {
            let start = i;
            let mut out = String::new();
            let mut chars = text[i + 1..].char_indices();
            while let Some((k, ch)) = chars.next() {
                match ch {
                    '"' => {
                        tokens.push((start, Token::Str(out)));
                        i = start + 1 + k + 1;
                        continue 'outer;
                    }
                    '\\' => match chars.next() {
                        // The original only unescapes \" (the rest is kept as written).
                        Some((_, '"')) => out.push('"'),
                        Some((_, other)) => {
                            out.push('\\');
                            out.push(other);
                        }
                        None => break,
                    },
                    other => out.push(other),
                }
            }
            return Err(format!("{what} parsing error: unterminated string starting at column {}", start + 1));
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            tokens.push((start, Token::Name(text[start..i].to_string())));
            continue;
        }
        if c.is_ascii_digit()
            || ((c == b'-' || c == b'+') && bytes.get(i + 1).is_some_and(|d| d.is_ascii_digit() || *d == b'.'))
            || (c == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            let start = i;
            i += 1;
            while i < bytes.len() {
                let d = bytes[i];
                let exponent_sign = (d == b'-' || d == b'+') && matches!(bytes[i - 1], b'e' | b'E');
                if d.is_ascii_digit() || d == b'.' || d == b'e' || d == b'E' || exponent_sign {
                    i += 1;
                } else {
                    break;
                }
            }
            tokens.push((start, Token::Number(text[start..i].to_string())));
            continue;
        }
        for symbol in SYMBOLS {
            if text[i..].starts_with(symbol) {
                tokens.push((i, Token::Symbol(symbol)));
                i += symbol.len();
                continue 'outer;
            }
        }
        let ch = text[i..].chars().next().unwrap_or('?');
        return Err(format!("{what} parsing error: unexpected character {ch:?} at column {}", i + 1));
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    pos: usize,
    what: &'static str,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(_, t)| t)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).map(|(_, t)| t.clone());
        self.pos += 1;
        t
    }

    fn error(&self, expected: &str) -> String {
        match self.tokens.get(self.pos) {
            Some((col, token)) => {
                format!("{} parsing error: unexpected {token} at column {}; expected {expected}", self.what, col + 1)
            }
            None => format!("{} parsing error: unexpected end of input; expected {expected}", self.what),
        }
    }

    fn expr(&mut self, depth: usize) -> Result<Filter, String> {
        if depth > 200 {
            return Err(format!("{} parsing error: the expression is nested too deeply", self.what));
        }
        if self.peek() == Some(&Token::Symbol("!")) {
            self.pos += 1;
            return Ok(Filter::Not(Box::new(self.expr(depth + 1)?)));
        }
        let left = self.term(depth)?;
        match self.peek() {
            Some(Token::Symbol("&")) => {
                self.pos += 1;
                Ok(Filter::And(Box::new(left), Box::new(self.expr(depth + 1)?)))
            }
            Some(Token::Symbol("|")) => {
                self.pos += 1;
                Ok(Filter::Or(Box::new(left), Box::new(self.expr(depth + 1)?)))
            }
            _ => Ok(left),
        }
    }

    fn term(&mut self, depth: usize) -> Result<Filter, String> {
        match self.peek() {
            Some(Token::Symbol("(")) => {
                self.pos += 1;
                let inner = self.expr(depth + 1)?;
                if self.peek() != Some(&Token::Symbol(")")) {
                    return Err(self.error("`)` or `&` or `|`"));
                }
                self.pos += 1;
                Ok(inner)
            }
            Some(Token::Name(_)) => {
                let Some(Token::Name(field)) = self.next() else { unreachable!("peeked a name") };
                let op = match self.peek() {
                    Some(Token::Symbol(s)) => Op::from_token(s),
                    Some(Token::Name(n)) => Op::from_token(n),
                    _ => None,
                };
                let Some(op) = op else {
                    return Err(self.error("an operator (==, !=, >, >=, <, <=, contains, in, isnot, is, like, ilike)"));
                };
                self.pos += 1;
                let value = self.value(depth)?;
                Ok(Filter::Compare { field, op, value })
            }
            _ => Err(self.error("a field name, `(` or `!`")),
        }
    }

    fn value(&mut self, depth: usize) -> Result<Literal, String> {
        if depth > 200 {
            return Err(format!("{} parsing error: the expression is nested too deeply", self.what));
        }
        match self.peek().cloned() {
            Some(Token::Str(s)) => {
                self.pos += 1;
                Ok(Literal::Str(s))
            }
            Some(Token::Number(n)) => {
                let literal = if n.contains(['.', 'e', 'E']) {
                    n.parse().map(Literal::Float).ok()
                } else {
                    n.parse().map(Literal::Int).ok()
                };
                let Some(literal) = literal else { return Err(self.error("a number")) };
                self.pos += 1;
                Ok(literal)
            }
            Some(Token::Name(n)) if matches!(n.as_str(), "null" | "true" | "false") => {
                self.pos += 1;
                Ok(match n.as_str() {
                    "null" => Literal::Null,
                    "true" => Literal::Bool(true),
                    _ => Literal::Bool(false),
                })
            }
            Some(Token::Symbol("[")) => {
                self.pos += 1;
                let mut items = Vec::new();
                if self.peek() == Some(&Token::Symbol("]")) {
                    self.pos += 1;
                    return Ok(Literal::Array(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    match self.next() {
                        Some(Token::Symbol(",")) => continue,
                        Some(Token::Symbol("]")) => return Ok(Literal::Array(items)),
                        _ => {
                            self.pos -= 1;
                            return Err(self.error("`,` or `]`"));
                        }
                    }
                }
            }
            _ => Err(self.error("a value (a \"string\", a number, null, true, false or [array])")),
        }
    }
}

/// Parses a filter expression.
pub fn parse_filter(text: &str) -> Result<Filter, String> {
    let what = "Query filter";
    let mut parser = Parser { tokens: tokenize(text, what)?, pos: 0, what };
    let filter = parser.expr(0)?;
    if parser.pos < parser.tokens.len() {
        return Err(parser.error("`&`, `|` or the end of the expression"));
    }
    Ok(filter)
}

/// Parses an ordering expression; an empty one is an empty list.
pub fn parse_order(text: &str) -> Result<Vec<OrderKey>, String> {
    let what = "Query ordering";
    let mut parser = Parser { tokens: tokenize(text, what)?, pos: 0, what };
    let mut keys = Vec::new();
    if parser.tokens.is_empty() {
        return Ok(keys);
    }
    loop {
        let descending = match parser.peek() {
            Some(Token::Symbol("-")) => {
                parser.pos += 1;
                true
            }
            Some(Token::Symbol("+")) => {
                parser.pos += 1;
                false
            }
            _ => false,
        };
        match parser.next() {
            Some(Token::Name(field)) => keys.push(OrderKey { field, descending }),
            _ => {
                parser.pos -= 1;
                return Err(parser.error("a field name, optionally prefixed by + or -"));
            }
        }
        match parser.next() {
            None => return Ok(keys),
            Some(Token::Symbol(",")) => continue,
            _ => {
                parser.pos -= 1;
                return Err(parser.error("`,` or the end of the expression"));
            }
        }
    }
}

/// How a field's values are typed.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// Free text.
    Text,
    /// An integer.
    Int,
    /// A timestamp column.
    Time,
    /// A timestamp stored as ISO 8601 text (inside a JSON document).
    TimeText,
    /// A UUID column.
    Uuid,
    /// A boolean column (`true`/`false`, compared with `==` and `!=`).
    Bool,
    /// An enumeration stored by wire name: the function maps what the user wrote to the
    /// stored text, or says what was expected.
    Enum(fn(&str) -> Result<String, String>),
}

/// Where a field's values are.
#[derive(Debug, Clone)]
pub enum Target {
    /// A column (or any scalar expression) of the listed table.
    Column(SimpleExpr),
    /// A JSON array of strings: the condition holds when it holds for any item.
    JsonArray(SimpleExpr),
    /// A text value inside a JSON object column: `column ->> key`.
    JsonKey(&'static str, &'static str),
    /// A column of another table: `outer IN (SELECT key FROM table WHERE column <cond>)`.
    Related {
        /// The listed table's foreign key, qualified.
        outer: SimpleExpr,
        /// The other table.
        table: &'static str,
        /// Its key column.
        key: &'static str,
        /// Its value column.
        column: &'static str,
    },
}

/// A field a list can filter or order by.
#[derive(Debug, Clone)]
pub struct FieldSpec {
    /// The field's name in expressions.
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Where it is.
    pub target: Target,
}

fn json_key_expr(backend: DbBackend, column: &str, key: &str) -> SimpleExpr {
    match backend {
        DbBackend::Postgres => Expr::cust(format!("(\"{column}\" ->> '{key}')")),
        _ => Expr::cust(format!("json_extract(\"{column}\", '$.{key}')")),
    }
}

/// `EXISTS (SELECT 1 FROM <items of column> AS item WHERE <condition on item.value>)`.
fn any_item(backend: DbBackend, column: SimpleExpr, condition: SimpleExpr) -> SimpleExpr {
    let template = match backend {
        DbBackend::Postgres => "EXISTS (SELECT 1 FROM jsonb_array_elements_text($1) AS item(value) WHERE $2)",
        _ => "EXISTS (SELECT 1 FROM json_each(?) AS item WHERE ?)",
    };
    Expr::cust_with_exprs(template, [column, condition])
}

fn item_value() -> SimpleExpr {
    Expr::cust("item.value")
}

fn find<'a>(specs: &'a [FieldSpec], field: &str) -> Result<&'a FieldSpec, String> {
    specs.iter().find(|s| s.name == field).ok_or_else(|| {
        let known: Vec<&str> = specs.iter().map(|s| s.name).collect();
        format!("Unknown/unsupported field name: {field:?} (known fields: {})", known.join(", "))
    })
}

fn scalar(kind: Kind, field: &str, value: &Literal) -> Result<Value, String> {
    let wrong = |expected: &str| format!("{field}: expected {expected}, got {value}");
    match kind {
        Kind::Text => match value {
            Literal::Str(s) => Ok(s.clone().into()),
            _ => Err(wrong("a string")),
        },
        Kind::Int => match value {
            Literal::Int(i) => Ok((*i).into()),
            Literal::Str(s) => s.trim().parse::<i64>().map(Value::from).map_err(|_| wrong("an integer")),
            _ => Err(wrong("an integer")),
        },
        Kind::Time => match value {
            Literal::Str(s) => parse_datetime(s).map(Value::from).map_err(|e| format!("{field}: {e}")),
            _ => Err(wrong("a date and time string")),
        },
        Kind::TimeText => match value {
            Literal::Str(s) => parse_datetime(s)
                .map(|at| Value::from(crate::db::entities::iso_timestamp(at)))
                .map_err(|e| format!("{field}: {e}")),
            _ => Err(wrong("a date and time string")),
        },
        Kind::Uuid => match value {
            Literal::Str(s) => uuid::Uuid::parse_str(s.trim()).map(Value::from).map_err(|_| wrong("a UUID string")),
            _ => Err(wrong("a UUID string")),
        },
        Kind::Bool => match value {
            Literal::Bool(b) => Ok((*b).into()),
            _ => Err(wrong("true or false")),
        },
        Kind::Enum(to_wire) => match value {
            Literal::Str(s) => to_wire(s).map(Value::from).map_err(|e| format!("{field}: {e}")),
            _ => Err(wrong("a string")),
        },
    }
}

fn compare(lhs: SimpleExpr, spec: &FieldSpec, op: Op, value: &Literal) -> Result<SimpleExpr, String> {
    let field = spec.name;
    let lhs = Expr::expr(lhs);
    let textual = matches!(spec.kind, Kind::Text);
    match (op, value) {
        (Op::Eq | Op::Is, Literal::Null) => return Ok(lhs.is_null()),
        (Op::Ne | Op::IsNot, Literal::Null) => return Ok(lhs.is_not_null()),
        (Op::Is, Literal::Bool(b)) if matches!(spec.kind, Kind::Bool) => return Ok(lhs.eq(*b)),
        (Op::IsNot, Literal::Bool(b)) if matches!(spec.kind, Kind::Bool) => return Ok(lhs.ne(*b)),
        (Op::Is | Op::IsNot, _) => {
            return Err(format!("{field}: `{}` takes null (this field is not a boolean)", op.as_str()))
        }
        (_, Literal::Null) => return Err(format!("{field}: `{}` cannot compare with null", op.as_str())),
        _ => {}
    }
    Ok(match op {
        Op::In => {
            let Literal::Array(items) = value else {
                return Err(format!("{field}: `in` takes an array, e.g. [\"a\", \"b\"]"));
            };
            let values = items.iter().map(|v| scalar(spec.kind, field, v)).collect::<Result<Vec<_>, _>>()?;
            lhs.is_in(values)
        }
        _ if matches!(value, Literal::Array(_)) => {
            return Err(format!("{field}: only `in` takes an array"));
        }
        Op::Eq => lhs.eq(scalar(spec.kind, field, value)?),
        Op::Ne => lhs.ne(scalar(spec.kind, field, value)?),
        Op::Gt | Op::Ge | Op::Lt | Op::Le if matches!(spec.kind, Kind::Uuid | Kind::Bool | Kind::Enum(_)) => {
            return Err(format!("{field}: `{}` does not apply to this field", op.as_str()));
        }
        Op::Gt => lhs.gt(scalar(spec.kind, field, value)?),
        Op::Ge => lhs.gte(scalar(spec.kind, field, value)?),
        Op::Lt => lhs.lt(scalar(spec.kind, field, value)?),
        Op::Le => lhs.lte(scalar(spec.kind, field, value)?),
        Op::Contains | Op::Like | Op::ILike if !textual => {
            return Err(format!("{field}: `{}` applies to text fields only", op.as_str()));
        }
        Op::Contains | Op::Like | Op::ILike => {
            let Literal::Str(pattern) = value else {
                return Err(format!("{field}: `{}` takes a string", op.as_str()));
            };
            match op {
                Op::Contains => lhs.like(LikeExpr::new(format!("%{pattern}%"))),
                Op::Like => lhs.like(LikeExpr::new(pattern.clone())),
                _ => Expr::expr(Func::lower(SimpleExpr::from(lhs))).like(LikeExpr::new(pattern.to_lowercase())),
            }
        }
        Op::Is | Op::IsNot => unreachable!("handled above"),
    })
}

/// Translates a filter into a condition over the listed table, with the fields of `specs`.
pub fn to_condition(filter: &Filter, specs: &[FieldSpec], backend: DbBackend) -> Result<SimpleExpr, String> {
    Ok(match filter {
        Filter::Not(inner) => to_condition(inner, specs, backend)?.not(),
        Filter::And(a, b) => to_condition(a, specs, backend)?.and(to_condition(b, specs, backend)?),
        Filter::Or(a, b) => to_condition(a, specs, backend)?.or(to_condition(b, specs, backend)?),
        Filter::Compare { field, op, value } => {
            let spec = find(specs, field)?;
            match &spec.target {
                Target::Column(column) => compare(column.clone(), spec, *op, value)?,
                Target::JsonKey(column, key) => compare(json_key_expr(backend, column, key), spec, *op, value)?,
                Target::JsonArray(column) => {
                    let condition = compare(item_value(), spec, *op, value)?;
                    any_item(backend, column.clone(), condition)
                }
                Target::Related { outer, table, key, column } => {
                    let inner = compare(Expr::col((Alias::new(*table), Alias::new(*column))).into(), spec, *op, value)?;
                    let sub = Query::select()
                        .column((Alias::new(*table), Alias::new(*key)))
                        .from(Alias::new(*table))
                        .and_where(inner)
                        .to_owned();
                    Expr::expr(outer.clone()).in_subquery(sub)
                }
            }
        }
    })
}

/// The expression to sort by for an ordering key.
pub fn order_expr(key: &OrderKey, specs: &[FieldSpec], backend: DbBackend) -> Result<SimpleExpr, String> {
    let spec = find(specs, &key.field)?;
    Ok(match &spec.target {
        Target::Column(column) | Target::JsonArray(column) => column.clone(),
        Target::JsonKey(column, k) => json_key_expr(backend, column, k),
        Target::Related { outer, table, key: k, column } => {
            // A correlated sub-query: `(SELECT column FROM table WHERE table.key = outer)`.
            let sub = Query::select()
                .column((Alias::new(*table), Alias::new(*column)))
                .from(Alias::new(*table))
                .and_where(Expr::col((Alias::new(*table), Alias::new(*k))).eq(outer.clone()))
                .limit(1)
                .to_owned();
            SimpleExpr::SubQuery(None, Box::new(sub.into_sub_query_statement()))
        }
    })
}

/// A qualified column of a table, as a target.
pub fn column<T: IntoIden + 'static, C: IntoIden + 'static>(table: T, column: C) -> SimpleExpr {
    Expr::col((table, column).into_column_ref()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(field: &str, op: Op, value: Literal) -> Filter {
        Filter::Compare { field: field.into(), op, value }
    }

    #[test]
    fn parses_the_original_grammar() {
        assert_eq!(parse_filter(r#"name ilike "%x%""#).unwrap(), cmp("name", Op::ILike, Literal::Str("%x%".into())));
        assert_eq!(
            parse_filter(r#"a == 1 & b != "x" | c in ["p", "q"]"#).unwrap(),
            Filter::And(
                Box::new(cmp("a", Op::Eq, Literal::Int(1))),
                Box::new(Filter::Or(
                    Box::new(cmp("b", Op::Ne, Literal::Str("x".into()))),
                    Box::new(cmp(
                        "c",
                        Op::In,
                        Literal::Array(vec![Literal::Str("p".into()), Literal::Str("q".into())])
                    )),
                )),
            )
        );
        assert_eq!(
            parse_filter(r#"(a is null) & !b isnot null"#).unwrap(),
            Filter::And(
                Box::new(cmp("a", Op::Is, Literal::Null)),
                Box::new(Filter::Not(Box::new(cmp("b", Op::IsNot, Literal::Null)))),
            )
        );
        assert_eq!(parse_filter(r#"x == "say \"hi\"""#).unwrap(), cmp("x", Op::Eq, Literal::Str("say \"hi\"".into())));
        assert_eq!(parse_filter("n >= -1.5e3").unwrap(), cmp("n", Op::Ge, Literal::Float(-1500.0)));
        assert_eq!(parse_filter("s contains \"in\"").unwrap(), cmp("s", Op::Contains, Literal::Str("in".into())));
    }

    #[test]
    fn filter_errors_say_where() {
        for bad in
            ["", "name", "name ==", "name = \"x\"", "(name == \"x\"", "name == \"x\" junk", "name == \"x", "name == x"]
        {
            let err = parse_filter(bad).unwrap_err();
            assert!(err.starts_with("Query filter parsing error"), "{bad}: {err}");
        }
    }

    #[test]
    fn parses_orderings() {
        assert_eq!(
            parse_order("-created_at, +name,status").unwrap(),
            vec![
                OrderKey { field: "created_at".into(), descending: true },
                OrderKey { field: "name".into(), descending: false },
                OrderKey { field: "status".into(), descending: false },
            ]
        );
        assert_eq!(parse_order("  ").unwrap(), vec![]);
        assert!(parse_order("name,").is_err());
        assert!(parse_order("name desc").is_err());
        assert!(parse_order("-").is_err());
    }
}
