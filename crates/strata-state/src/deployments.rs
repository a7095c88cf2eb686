//! What each table looked like when a successful task last built it: the
//! definition's fingerprint and the output columns. `strata plan` compares the
//! project on disk with these records.

use sqlx::Row;

use crate::error::{Ctx, Error, Result};
use crate::{StateStore, now};

/// One column of a deployed table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeployedColumn {
    /// Name.
    pub name: String,
    /// Arrow data type, as DataFusion prints it (`Int64`, `Decimal128(15, 2)`).
    pub ty: String,
    /// Whether nulls may occur.
    pub nullable: bool,
}

/// A table as last deployed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Deployment {
    /// `silver.orders`.
    pub name: String,
    /// `source` or `model`.
    pub kind: String,
    /// Fingerprint of the definition (normalized SQL and the config that
    /// changes the output).
    pub fingerprint: String,
    /// The materialization (`table`, `incremental`, …) or `ingest`.
    pub materialized: String,
    /// The output columns.
    pub columns: Vec<DeployedColumn>,
    /// The run that deployed it.
    pub run_id: String,
    /// RFC 3339.
    pub deployed_at: String,
}

impl StateStore {
    /// Records (or replaces) the deployment of one table.
    pub async fn record_deployment(&self, d: &Deployment) -> Result<()> {
        let columns = serde_json::to_string(&d.columns).map_err(|e| Error::Corrupt {
            what: "deployments.columns",
            detail: e.to_string(),
        })?;
        sqlx::query(
            "INSERT INTO deployments (name, kind, fingerprint, materialized, columns, run_id, deployed_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, fingerprint = excluded.fingerprint, materialized = excluded.materialized,
               columns = excluded.columns, run_id = excluded.run_id, deployed_at = excluded.deployed_at",
        )
        .bind(&d.name)
        .bind(&d.kind)
        .bind(&d.fingerprint)
        .bind(&d.materialized)
        .bind(columns)
        .bind(&d.run_id)
        .bind(if d.deployed_at.is_empty() { now() } else { d.deployed_at.clone() })
        .execute(&self.pool)
        .await
        .ctx("record deployment")?;
        Ok(())
    }

    /// Every deployed table, by name.
    pub async fn deployments(&self) -> Result<Vec<Deployment>> {
        let rows = sqlx::query(
            "SELECT name, kind, fingerprint, materialized, columns, run_id, deployed_at FROM deployments ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await
        .ctx("read deployments")?;
        rows.iter().map(row_to_deployment).collect()
    }

    /// One table's deployment.
    pub async fn deployment(&self, name: &str) -> Result<Option<Deployment>> {
        let row = sqlx::query(
            "SELECT name, kind, fingerprint, materialized, columns, run_id, deployed_at FROM deployments WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .ctx("read deployment")?;
        row.as_ref().map(row_to_deployment).transpose()
    }

    /// Forgets the deployments of tables no longer in the project (`keep`
    /// lists those that are); returns how many were forgotten.
    pub async fn forget_deployments_except(&self, keep: &[String]) -> Result<u64> {
        let known = self.deployments().await?;
        let mut n = 0;
        for d in known.iter().filter(|d| !keep.contains(&d.name)) {
            n += sqlx::query("DELETE FROM deployments WHERE name = $1")
                .bind(&d.name)
                .execute(&self.pool)
                .await
                .ctx("forget deployment")?
                .rows_affected();
        }
        Ok(n)
    }
}

fn row_to_deployment(r: &sqlx::any::AnyRow) -> Result<Deployment> {
    let columns: String = r.try_get(4).ctx("read deployment")?;
    Ok(Deployment {
        name: r.try_get(0).ctx("read deployment")?,
        kind: r.try_get(1).ctx("read deployment")?,
        fingerprint: r.try_get(2).ctx("read deployment")?,
        materialized: r.try_get(3).ctx("read deployment")?,
        columns: serde_json::from_str(&columns).map_err(|e| Error::Corrupt {
            what: "deployments.columns",
            detail: e.to_string(),
        })?,
        run_id: r.try_get(5).ctx("read deployment")?,
        deployed_at: r.try_get(6).ctx("read deployment")?,
    })
}
