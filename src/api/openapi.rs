//! The `OpenAPI` document: paths from the handlers' annotations (success
//! responses only), and the error responses added from one table,
//! [`ROUTES`], which also lists every route the router serves.

use utoipa::openapi::path::Operation;
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};

use super::routes::{cases, catalog, clusters, jobs, lookup, ops, webhooks};
use super::types::{
    AddImageOut, BatchRequest, BatchResponse, DeletedOut, ImageJson, JobAccepted, JobView, LookupResponse, Problem, ProductIn, ProductOut,
    Ready, StatsOut,
};
use crate::catalog::store::{AuditRow, DecisionRow};
use crate::review;

/// `GET /openapi.json`: this document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "this document", body = Object)))]
pub async fn serve() -> impl axum::response::IntoResponse {
    use utoipa::OpenApi as _;
    axum::Json(ApiDoc::openapi())
}

/// Every problem a route may answer, with its meaning.
const PROBLEMS: &[(u16, &str)] = &[
    (400, "invalid parameters, path or JSON"),
    (401, "missing or wrong API key"),
    (403, "the key's role may not do this"),
    (404, "unknown product, image, job, case or route"),
    (409, "the case changed since it was read (its current ETag in the response), or is decided already; a POST whose Idempotency-Key's first request still runs"),
    (413, "body over the limit"),
    (415, "unsupported media type"),
    (422, "undecodable, truncated, empty or over-limit image; a decision naming a product that does not exist; an Idempotency-Key sent before with another request"),
    (428, "a decision without If-Match"),
    (503, "inference queue full or timeout (Retry-After)"),
];

const OPEN: &[u16] = &[];
const READ: &[u16] = &[401, 403];
const ADMIN: &[u16] = &[400, 401, 403, 404];
const IMAGE: &[u16] = &[400, 401, 403, 413, 415, 422, 503];

/// Every route the router serves: (method, path, the problems it may answer).
pub const ROUTES: &[(&str, &str, &[u16])] = &[
    ("get", "/", OPEN),
    ("get", "/healthz", OPEN),
    ("get", "/readyz", OPEN),
    ("get", "/metrics", OPEN),
    ("get", "/openapi.json", OPEN),
    ("post", "/v1/lookup", IMAGE),
    ("post", "/v1/lookup/batch", IMAGE),
    ("get", "/v1/stats", READ),
    ("get", "/v1/products", ADMIN),
    ("get", "/v1/products/{id}", ADMIN),
    ("put", "/v1/products/{id}", &[400, 401, 403, 413]),
    ("delete", "/v1/products/{id}", ADMIN),
    ("post", "/v1/products/{id}/images", &[400, 401, 403, 404, 413, 415, 422, 503]),
    ("delete", "/v1/images/{id}", ADMIN),
    ("get", "/v1/images/{id}/thumbnail", &[400, 401, 403, 404]),
    ("post", "/v1/jobs/index", &[400, 401, 403, 413, 415]),
    ("get", "/v1/jobs", ADMIN),
    ("get", "/v1/jobs/{id}", ADMIN),
    ("get", "/review", OPEN),
    ("get", "/v1/cases", &[400, 401, 403]),
    ("get", "/v1/cases/{id}", ADMIN),
    ("get", "/v1/cases/{id}/photo", ADMIN),
    ("get", "/v1/cases/{id}/evidence", ADMIN),
    ("post", "/v1/cases/{id}/decision", &[400, 401, 403, 404, 409, 413, 422, 428]),
    ("delete", "/v1/cases/{id}/decision", &[400, 401, 403, 404, 409, 428]),
    ("get", "/v1/clusters", &[400, 401, 403]),
    ("get", "/v1/clusters/{id}", ADMIN),
    ("get", "/v1/webhooks", &[401, 403]),
    ("post", "/v1/webhooks/{name}/enable", ADMIN),
];

/// The `OpenAPI` document, generated from the handlers' annotations and the request/response types.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "knockoff", description = "Counterfeit detector: match listing photos against brand catalogs."),
    paths(
        ops::page, ops::healthz, ops::readyz, ops::metrics, serve, ops::stats,
        lookup::lookup, lookup::lookup_batch,
        catalog::list_products, catalog::get_product, catalog::put_product, catalog::delete_product, catalog::add_image, catalog::delete_image, catalog::thumbnail,
        jobs::submit_job, jobs::list_jobs, jobs::get_job,
        ops::review_page, cases::list_cases, cases::get_case, cases::case_photo, cases::evidence, cases::decide, cases::undo,
        clusters::list_clusters, clusters::get_cluster,
        webhooks::list_webhooks, webhooks::enable_webhook
    ),
    components(schemas(Problem, ImageJson, LookupResponse, BatchRequest, BatchResponse, ProductIn, ProductOut, AddImageOut, DeletedOut, JobAccepted, JobView, StatsOut, Ready,
        review::Case, super::pages::CaseList, review::Cluster, super::pages::ClusterList, review::DecisionInput, review::Decision, DecisionRow, AuditRow, crate::webhooks::TargetView)),
    modifiers(&BearerAuth, &Problems),
    tags((name = "lookup"), (name = "catalog"), (name = "jobs"), (name = "review"), (name = "webhooks"), (name = "operations"))
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
        doc.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
    }
}

/// Adds each route's problem responses from [`ROUTES`].
struct Problems;

fn operation<'a>(item: &'a mut utoipa::openapi::PathItem, method: &str) -> Option<&'a mut Operation> {
    match method {
        "get" => item.get.as_mut(),
        "put" => item.put.as_mut(),
        "post" => item.post.as_mut(),
        "delete" => item.delete.as_mut(),
        _ => None,
    }
}

/// The optional `Idempotency-Key` header of every POST.
fn idempotency_key() -> utoipa::openapi::path::Parameter {
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    ParameterBuilder::new()
        .name("Idempotency-Key")
        .parameter_in(ParameterIn::Header)
        .required(utoipa::openapi::Required::False)
        .description(Some("1–255 visible ASCII characters: a retry with the same key and request gets the first answer again (kept 24 h)"))
        .schema(Some(utoipa::openapi::ObjectBuilder::new().schema_type(utoipa::openapi::schema::Type::String).max_length(Some(255))))
        .build()
}

impl utoipa::Modify for Problems {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        for (method, path, codes) in ROUTES {
            let Some(op) = doc.paths.paths.get_mut(*path).and_then(|item| operation(item, method)) else { continue };
            // A route that answers no 401 takes no key: it says so, over the document's default.
            if !codes.contains(&401) {
                op.security = Some(Vec::new());
            }
            // Every POST takes an Idempotency-Key (409 while its first request runs, 422 for another request).
            let keyed: &[u16] = if *method == "post" { &[409, 422] } else { &[] };
            if *method == "post" {
                op.parameters.get_or_insert_with(Vec::new).push(idempotency_key());
            }
            for (code, description) in PROBLEMS.iter().filter(|(c, _)| codes.contains(c) || keyed.contains(c)) {
                let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
                let mut response = ResponseBuilder::new().description(*description).content("application/problem+json", content);
                if *code == 503 {
                    let seconds = utoipa::openapi::HeaderBuilder::new()
                        .schema(utoipa::openapi::ObjectBuilder::new().schema_type(utoipa::openapi::schema::Type::Integer))
                        .description(Some("seconds to wait before retrying"))
                        .build();
                    response = response.header("Retry-After", seconds);
                }
                op.responses.responses.insert(code.to_string(), response.build().into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi;

    use super::*;

    #[test]
    fn openapi_documents_every_route_and_its_problems() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        for (method, path, codes) in ROUTES {
            let op = &doc["paths"][path][method];
            assert!(op.is_object(), "{method} {path} is not in the OpenAPI document");
            for c in *codes {
                let r = &op["responses"][c.to_string()];
                assert_eq!(
                    r["content"]["application/problem+json"]["schema"]["$ref"], "#/components/schemas/Problem",
                    "{method} {path} {c}"
                );
            }
        }
        let n: usize = doc["paths"].as_object().unwrap().values().map(|p| p.as_object().unwrap().len()).sum();
        assert_eq!(n, ROUTES.len(), "the document lists routes the router does not serve");
        assert!(PROBLEMS.iter().all(|(c, _)| ROUTES.iter().any(|r| r.2.contains(c))), "every listed problem is used");
    }

    /// #30: a generated client needs every body form with a named schema,
    /// ranges that match the server, open routes marked open and the headers
    /// a client acts on.
    #[test]
    fn openapi_declares_every_body_form_the_ranges_the_open_routes_and_the_headers() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let forms = |method: &str, path: &str| -> Vec<String> {
            doc["paths"][path][method]["requestBody"]["content"].as_object().map(|c| c.keys().cloned().collect()).unwrap_or_default()
        };
        for path in ["/v1/lookup", "/v1/products/{id}/images"] {
            assert_eq!(forms("post", path), ["application/json", "image/*", "multipart/form-data"], "{path}");
            let raw = &doc["paths"][path]["post"]["requestBody"]["content"]["image/*"]["schema"]["$ref"];
            assert_eq!(raw, "#/components/schemas/RawImage", "{path}");
        }
        assert_eq!(forms("post", "/v1/lookup/batch"), ["application/json", "multipart/form-data"]);
        assert_eq!(forms("post", "/v1/jobs/index"), ["application/json", "application/x-ndjson", "text/csv"]);
        let schemas = &doc["components"]["schemas"];
        assert_eq!(schemas["RawImage"]["format"], "binary", "{}", schemas["RawImage"]);
        assert_eq!(schemas["JobJson"]["oneOf"].as_array().map(Vec::len), Some(2), "{}", schemas["JobJson"]);
        let k = doc["paths"]["/v1/lookup"]["post"]["parameters"].as_array().unwrap().iter().find(|p| p["name"] == "k").unwrap().clone();
        assert_eq!((k["schema"]["minimum"].as_f64(), k["schema"]["maximum"].as_f64()), (Some(1.0), Some(100.0)), "{k}");
        for (method, path, codes) in ROUTES {
            let security = &doc["paths"][path][method]["security"];
            assert_eq!(security.as_array().is_some_and(Vec::is_empty), !codes.contains(&401), "{method} {path}: {security}");
        }
        assert!(doc["security"].as_array().is_some_and(|s| !s.is_empty()), "keyed by default");
        assert!(doc["paths"]["/v1/lookup"]["post"]["responses"]["503"]["headers"]["Retry-After"].is_object());
        assert!(doc["paths"]["/v1/jobs/index"]["post"]["responses"]["202"]["headers"]["Location"].is_object());
        let status = &schemas["JobStatus"]["enum"];
        assert_eq!(status.as_array().map(Vec::len), Some(5), "{status}");
    }
}
