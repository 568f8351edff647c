//! The databases `sql` actions query: a pool per `mysql` or `postgres` connection, made when
//! the config is loaded (connections are opened on first use). One query runs in its own
//! transaction, read-only unless the action may write, within the connection's timeout;
//! rows come back as JSON objects by column.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value as Json};

use super::connection::{Connection, SqlBackend, SqlConnection};
use super::error::ActionError;
use super::sql::Rendered;

/// A connection's pool.
enum Db {
    Postgres(deadpool_postgres::Pool),
    #[cfg(feature = "mysql")]
    Mysql(mysql_async::Pool),
}

/// What a query gave back: the rows (at most `max_rows`), whether there were more, and for a
/// write how many rows it changed.
#[derive(Debug, Default)]
struct Answer {
    rows: Vec<Json>,
    truncated: bool,
    affected: u64,
}

/// One pool per database connection of the config.
#[derive(Default)]
pub struct Databases {
    pools: HashMap<String, (Db, std::time::Duration)>,
}

impl Databases {
    pub fn new(connections: &BTreeMap<String, Connection>) -> Result<Self, String> {
        let mut pools = HashMap::new();
        for (name, c) in connections {
            if let Connection::Sql(s) = c {
                let db = open(s).map_err(|e| format!("connections.{name}: {e}"))?;
                pools.insert(name.clone(), (db, s.timeout));
            }
        }
        Ok(Self { pools })
    }

    /// Runs the rendered query: `{"rows": [...], "count": n, "truncated": bool}` (and
    /// `"affected"` for a write).
    pub async fn query(&self, q: &Rendered) -> Result<Json, ActionError> {
        let (db, timeout) = self.pools.get(&q.via).ok_or_else(|| {
            ActionError::permanent(format!("no database connection named {:?}", q.via))
        })?;
        let run = async {
            match db {
                Db::Postgres(pool) => postgres(pool, q).await,
                #[cfg(feature = "mysql")]
                Db::Mysql(pool) => mysql(pool, q).await,
            }
        };
        let answer = tokio::time::timeout(*timeout, run).await.map_err(|_| {
            ActionError::retryable(format!(
                "{}: no answer within {} s",
                q.via,
                timeout.as_secs()
            ))
        })??;
        let mut out = serde_json::json!({
            "count": answer.rows.len(),
            "truncated": answer.truncated,
            "rows": answer.rows,
        });
        if q.write {
            out["affected"] = answer.affected.into();
        }
        Ok(out)
    }
}

fn open(s: &SqlConnection) -> Result<Db, String> {
    match s.backend {
        SqlBackend::Postgres => {
            let (mut pg, verify) =
                crate::store::settings::parse_postgres_url(s.url.expose(), false)?;
            if pg.get_connect_timeout().is_none() {
                pg.connect_timeout(s.timeout);
            }
            let tls = crate::tls::client(verify, None)
                .map(tokio_postgres_rustls::MakeRustlsConnect::new)
                .map_err(|e| e.to_string())?;
            let manager = deadpool_postgres::Manager::from_config(
                pg,
                tls,
                deadpool_postgres::ManagerConfig {
                    recycling_method: deadpool_postgres::RecyclingMethod::Fast,
                },
            );
            deadpool_postgres::Pool::builder(manager)
                .max_size(s.pool_size)
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .wait_timeout(Some(s.timeout))
                .create_timeout(Some(s.timeout))
                .recycle_timeout(Some(s.timeout))
                .build()
                .map(Db::Postgres)
                .map_err(|e| e.to_string())
        }
        #[cfg(feature = "mysql")]
        SqlBackend::Mysql => {
            let opts = mysql_async::Opts::from_url(s.url.expose())
                .map_err(|_| "not a MySQL URL (mysql://user:password@host:3306/db)".to_owned())?;
            let constraints = mysql_async::PoolConstraints::new(0, s.pool_size)
                .ok_or("pool_size must be at least 1")?;
            let opts = mysql_async::OptsBuilder::from_opts(opts)
                .pool_opts(mysql_async::PoolOpts::default().with_constraints(constraints));
            Ok(Db::Mysql(mysql_async::Pool::new(opts)))
        }
        #[cfg(not(feature = "mysql"))]
        SqlBackend::Mysql => Err("built without MySQL support (cargo feature \"mysql\")".into()),
    }
}

/// A database's refusal of the statement (syntax, a constraint, a read-only transaction)
/// will not change on a retry; losing the connection may.
fn postgres_error(e: tokio_postgres::Error) -> ActionError {
    match e.as_db_error() {
        Some(db) => {
            ActionError::permanent(format!("postgres: {} ({})", db.message(), db.code().code()))
        }
        None => ActionError::retryable(format!("postgres: {e}")),
    }
}

async fn postgres(pool: &deadpool_postgres::Pool, q: &Rendered) -> Result<Answer, ActionError> {
    use futures_util::StreamExt;
    let mut client = pool
        .get()
        .await
        .map_err(|e| ActionError::retryable(format!("postgres: {e}")))?;
    let tx = client
        .build_transaction()
        .read_only(!q.write)
        .start()
        .await
        .map_err(postgres_error)?;
    let stmt = tx.prepare(&q.positional).await.map_err(postgres_error)?;
    let mut values: Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>> = Vec::new();
    for ((name, text), ty) in q.values.iter().zip(stmt.params()) {
        values.push(pg_value(name, text, ty)?);
    }
    // PostgreSQL numbers a repeated name once: bind one value per number.
    let args: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = values
        .iter()
        .map(|v| &**v as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    let stream = tx.query_raw(&stmt, args).await.map_err(postgres_error)?;
    futures_util::pin_mut!(stream);
    let mut answer = Answer::default();
    while let Some(row) = stream.next().await {
        let row = row.map_err(postgres_error)?;
        if answer.rows.len() == q.max_rows {
            answer.truncated = true;
            break;
        }
        answer.rows.push(pg_row(&row)?);
    }
    answer.affected = stream.rows_affected().unwrap_or(answer.rows.len() as u64);
    tx.commit().await.map_err(postgres_error)?;
    Ok(answer)
}

/// A parameter's text as the type PostgreSQL expects there.
fn pg_value(
    name: &str,
    text: &str,
    ty: &tokio_postgres::types::Type,
) -> Result<Box<dyn tokio_postgres::types::ToSql + Sync + Send>, ActionError> {
    use tokio_postgres::types::Type;
    let bad = |what: &str| ActionError::permanent(format!(":{name} = {text:?} is not {what}"));
    Ok(match *ty {
        Type::BOOL => Box::new(match text.trim() {
            "true" | "t" | "1" => true,
            "false" | "f" | "0" => false,
            _ => return Err(bad("a boolean")),
        }),
        Type::INT2 => Box::new(text.trim().parse::<i16>().map_err(|_| bad("an integer"))?),
        Type::INT4 => Box::new(text.trim().parse::<i32>().map_err(|_| bad("an integer"))?),
        Type::INT8 => Box::new(text.trim().parse::<i64>().map_err(|_| bad("an integer"))?),
        Type::FLOAT4 => Box::new(text.trim().parse::<f32>().map_err(|_| bad("a number"))?),
        Type::FLOAT8 => Box::new(text.trim().parse::<f64>().map_err(|_| bad("a number"))?),
        Type::JSON | Type::JSONB => {
            Box::new(serde_json::from_str::<Json>(text).map_err(|_| bad("JSON"))?)
        }
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            Box::new(text.to_owned())
        }
        ref other => {
            return Err(ActionError::permanent(format!(
                ":{name} is a {other} there; cast it in the query (:{name}::{other}) so it is bound as text"
            )));
        }
    })
}

/// A row as a JSON object by column name.
fn pg_row(row: &tokio_postgres::Row) -> Result<Json, ActionError> {
    use tokio_postgres::types::Type;
    let mut out = Map::new();
    for (i, col) in row.columns().iter().enumerate() {
        let get_err = |e: tokio_postgres::Error| {
            ActionError::permanent(format!("column {}: {e}", col.name()))
        };
        let v: Json = match *col.type_() {
            Type::BOOL => row.try_get::<_, Option<bool>>(i).map_err(get_err)?.into(),
            Type::INT2 => row.try_get::<_, Option<i16>>(i).map_err(get_err)?.into(),
            Type::INT4 => row.try_get::<_, Option<i32>>(i).map_err(get_err)?.into(),
            Type::INT8 => row.try_get::<_, Option<i64>>(i).map_err(get_err)?.into(),
            Type::FLOAT4 => row.try_get::<_, Option<f32>>(i).map_err(get_err)?.into(),
            Type::FLOAT8 => row.try_get::<_, Option<f64>>(i).map_err(get_err)?.into(),
            Type::JSON | Type::JSONB => row
                .try_get::<_, Option<Json>>(i)
                .map_err(get_err)?
                .unwrap_or_default(),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
                row.try_get::<_, Option<String>>(i).map_err(get_err)?.into()
            }
            ref other => {
                return Err(ActionError::permanent(format!(
                    "column {} is a {other}; select it as text ({}::text)",
                    col.name(),
                    col.name()
                )));
            }
        };
        out.insert(col.name().to_owned(), v);
    }
    Ok(Json::Object(out))
}

#[cfg(feature = "mysql")]
fn mysql_error(e: mysql_async::Error) -> ActionError {
    match e {
        mysql_async::Error::Server(s) => {
            ActionError::permanent(format!("mysql: {} ({})", s.message, s.code))
        }
        other => ActionError::retryable(format!("mysql: {other}")),
    }
}

#[cfg(feature = "mysql")]
async fn mysql(pool: &mysql_async::Pool, q: &Rendered) -> Result<Answer, ActionError> {
    use futures_util::StreamExt;
    use mysql_async::prelude::Queryable;
    let mut opts = mysql_async::TxOpts::default();
    opts.with_readonly(!q.write);
    let mut tx = pool.start_transaction(opts).await.map_err(mysql_error)?;
    let params: Vec<mysql_async::Value> = q
        .values
        .iter()
        .map(|(_, v)| mysql_async::Value::Bytes(v.clone().into_bytes()))
        .collect();
    let mut answer = Answer::default();
    {
        let mut result = tx
            .exec_iter(q.positional.as_str(), params)
            .await
            .map_err(mysql_error)?;
        answer.affected = result.affected_rows();
        if let Some(stream) = result
            .stream::<mysql_async::Row>()
            .await
            .map_err(mysql_error)?
        {
            futures_util::pin_mut!(stream);
            while let Some(row) = stream.next().await {
                let row = row.map_err(mysql_error)?;
                if answer.rows.len() == q.max_rows {
                    answer.truncated = true;
                    continue;
                }
                answer.rows.push(mysql_row(row));
            }
        }
    }
    tx.commit().await.map_err(mysql_error)?;
    Ok(answer)
}

/// A row as a JSON object by column name; text as UTF-8 (lossy), dates as text.
#[cfg(feature = "mysql")]
fn mysql_row(row: mysql_async::Row) -> Json {
    use mysql_async::Value as V;
    let columns = row.columns();
    let values = row.unwrap();
    let mut out = Map::new();
    for (col, v) in columns.iter().zip(values) {
        let j = match v {
            V::NULL => Json::Null,
            V::Bytes(b) => String::from_utf8_lossy(&b).into_owned().into(),
            V::Int(i) => i.into(),
            V::UInt(u) => u.into(),
            V::Float(f) => f.into(),
            V::Double(d) => d.into(),
            V::Date(y, mo, d, h, mi, s, us) => format!(
                "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}{}",
                if us > 0 {
                    format!(".{us:06}")
                } else {
                    String::new()
                }
            )
            .into(),
            V::Time(neg, d, h, mi, s, _) => format!(
                "{}{:02}:{mi:02}:{s:02}",
                if neg { "-" } else { "" },
                u32::from(h) + d * 24
            )
            .into(),
        };
        out.insert(col.name_str().into_owned(), j);
    }
    Json::Object(out)
}
