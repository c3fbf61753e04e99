//! `/api/v1/tenants/{tenant}/agents/{agent_id}/sweep`: preview the sweep
//! config an agent receives (the same document GetConfig serves).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::principal::{Principal, tenant_for};
use super::problem::Problem;
use crate::identity::valid_label;
use crate::state::AppState;

pub async fn preview(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path((tenant, agent_id)): Path<(String, String)>,
) -> Result<Json<Value>, Problem> {
    let tenant = tenant_for(&state, &principal, &tenant).await?;
    if !valid_label(&agent_id) {
        return Err(Problem::bad_request(format!(
            "agent id {agent_id:?} is not a valid component id (letters, digits, '-', '_'; no dots)"
        ))
        .with_field("agent_id"));
    }
    let sweep = crate::sweep_delivery::agent_sweep(
        &state.pool,
        &state.sweep_cache,
        tenant.id,
        &agent_id,
        state.clock.now(),
    )
    .await
    .map_err(|e| Problem::internal(&e))?;
    Ok(Json(json!({
        "tenant": tenant.slug,
        "agent_id": agent_id,
        "config_version": sweep.version,
        "built_at": sweep.built_at,
        "stats": sweep.stats,
        "sweep": &*sweep.document,
    })))
}
