//! What every catalog backend must do, run on both: the embedded folder and
//! the shared PostgreSQL + Milvus backend (one suite, two backends). The
//! shared runs need the engines (`./scripts/test.sh` starts them; under CI
//! their absence fails these tests).

use knockoff::catalog::store::Arg;
use knockoff::catalog::{Catalog, CatalogError, CatalogOptions, Filter, Label, Product};
use knockoff::search::{search_products, SearchRequest};

mod common;

use common::synth::{images, opts, vector};
use common::{backends, eventually, SharedDb};

fn top_ids(cat: &Catalog, q: &[f32], k: usize) -> Vec<String> {
    search_products(cat, q, &SearchRequest { k, ..Default::default() }).unwrap().iter().map(|m| m.product.product_id.clone()).collect()
}

#[test]
fn products_are_grouped_and_filters_apply_inside_the_search() {
    for b in backends("filters") {
        let (cat, _) = b.open(opts()).unwrap();
        cat.add_images(&images(40, 3)).unwrap();
        let q = vector(7);
        let res = search_products(&cat, &q, &SearchRequest { k: 5, second_best: true, ..Default::default() }).unwrap();
        assert_eq!(res.len(), 5, "{}", b.name());
        assert_eq!(res[0].product.product_id, "p7");
        let mut ids: Vec<_> = res.iter().map(|m| m.product.product_id.clone()).collect();
        ids.dedup();
        assert_eq!(ids.len(), 5, "one entry per product");
        assert!(res[0].second.is_some() && res[0].second.as_ref().unwrap().similarity <= res[0].best.similarity);
        assert!(res.windows(2).all(|w| w[0].best.similarity >= w[1].best.similarity));

        // Filters: the best Globex match for a query near p7 (Globex) is p7; for Acme it is not.
        let acme = Filter { brand: Some("Acme".into()), ..Default::default() };
        let res = search_products(&cat, &q, &SearchRequest { k: 10, filter: acme, ..Default::default() }).unwrap();
        assert_eq!(res.len(), 10, "a filter still fills k ({})", b.name());
        assert!(res.iter().all(|m| m.product.brand.as_deref() == Some("Acme")));
        let fake = Filter { label: Some(Label::Counterfeit), category: Some("cat2".into()), ..Default::default() };
        let res = search_products(&cat, &q, &SearchRequest { k: 3, filter: fake, ..Default::default() }).unwrap();
        assert!(!res.is_empty());
        assert!(res.iter().all(|m| m.product.label == Label::Counterfeit && m.product.category.as_deref() == Some("cat2")));
    }
}

#[test]
fn products_list_a_page_at_a_time_and_a_retried_delete_is_told_apart() {
    for b in backends("pages") {
        let (cat, _) = b.open(opts()).unwrap();
        cat.add_images(&images(7, 1)).unwrap();
        let mut seen = Vec::new();
        let mut after = String::new();
        loop {
            let page = cat.products_page(&after, 3).unwrap();
            assert!(page.items.len() <= 3, "{}", b.name());
            seen.extend(page.items.iter().map(|p| p.product_id.clone()));
            let Some(last) = page.items.last() else { break };
            after.clone_from(&last.product_id);
            if !page.has_more {
                break;
            }
        }
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!((seen.len(), &seen), (7, &sorted), "every product once, in id order ({})", b.name());
        cat.delete_product("p3").unwrap();
        assert!(matches!(cat.delete_product("p3"), Err(CatalogError::ProductDeleted(_))), "{}", b.name());
        let page = cat.products_page("", 10).unwrap();
        assert_eq!((page.items.len(), page.has_more), (6, false), "{}", b.name());
    }
}

#[test]
fn re_adding_the_same_bytes_is_skipped() {
    for b in backends("readd") {
        let (cat, _) = b.open(opts()).unwrap();
        let imgs = images(3, 2);
        assert!(cat.add_images(&imgs).unwrap().iter().all(std::option::Option::is_some), "{}", b.name());
        assert!(cat.add_images(&imgs).unwrap().iter().all(std::option::Option::is_none));
        assert_eq!(cat.stats().unwrap().counts.images, 6);
    }
}

#[test]
fn deletes_hide_at_once_and_survive_reopening() {
    for b in backends("deletes") {
        let (cat, _) = b.open(opts()).unwrap();
        cat.add_images(&images(20, 3)).unwrap();
        let q = vector(5);
        assert_eq!(top_ids(&cat, &q, 1), vec!["p5"], "{}", b.name());
        assert_eq!(cat.delete_product("p5").unwrap(), 3);
        let gone = |cat: &Catalog| {
            let ids = top_ids(cat, &q, 20);
            assert_eq!(ids.len(), 19, "{}", b.name());
            assert!(!ids.contains(&"p5".to_string()));
        };
        gone(&cat);
        let img = search_products(&cat, &vector(6), &SearchRequest { k: 1, ..Default::default() }).unwrap()[0].best.image_id;
        cat.delete_image(img).unwrap();
        let again = search_products(&cat, &vector(6), &SearchRequest { k: 1, ..Default::default() }).unwrap();
        assert_eq!(again[0].product.product_id, "p6");
        assert_ne!(again[0].best.image_id, img);
        assert!(matches!(cat.delete_product("p5"), Err(CatalogError::ProductDeleted(_))), "deleted before");
        assert!(matches!(cat.delete_product("p-never"), Err(CatalogError::UnknownProduct(_))));
        assert!(matches!(cat.delete_image(img), Err(CatalogError::UnknownImage(_))));
        assert_eq!(cat.stats().unwrap().counts.images, 56);
        cat.persist().unwrap();
        drop(cat);
        let (cat, _) = b.open(opts()).unwrap();
        gone(&cat);
        assert_eq!(cat.live_image_count(), 56);
        cat.compact().unwrap();
        gone(&cat);
    }
}

#[test]
fn image_ids_are_never_reused_not_even_after_compaction_purged_the_newest() {
    for b in backends("ids") {
        let (cat, _) = b.open(opts()).unwrap();
        let ids: Vec<i64> = cat.add_images(&images(4, 2)).unwrap().into_iter().flatten().collect();
        let newest = *ids.iter().max().unwrap();
        // The newest images go, and compaction purges their rows.
        cat.delete_product("p3").unwrap();
        cat.compact().unwrap();
        drop(cat);
        let (cat, _) = b.open(opts()).unwrap();
        let mut more = images(6, 1);
        more.retain(|i| i.product.product_id == "p5");
        let fresh = cat.add_images(&more).unwrap()[0].unwrap();
        assert!(fresh > newest, "{}: a new image got id {fresh}, not above the purged {newest}", b.name());
        // A retried delete of a purged id finds nothing rather than the new image.
        assert!(matches!(cat.delete_image(newest), Err(CatalogError::UnknownImage(_))), "{}", b.name());
        assert_eq!(cat.stats().unwrap().counts.images, 7, "{}", b.name());
    }
}

#[test]
fn product_metadata_updates_reach_answers_and_filters() {
    for b in backends("upsert") {
        let (cat, _) = b.open(opts()).unwrap();
        cat.add_images(&images(10, 2)).unwrap();
        let mut p = cat.records().product("p4").unwrap().unwrap();
        p.brand = Some("Initech".into());
        p.name = Some("Renamed".into());
        cat.upsert_product(&p).unwrap();
        let only = Filter { brand: Some("Initech".into()), ..Default::default() };
        let res = search_products(&cat, &vector(1), &SearchRequest { k: 5, filter: only, ..Default::default() }).unwrap();
        // (On the shared backend the filter runs inside Milvus, on fields copied there.)
        let ids: Vec<_> = res.iter().map(|m| m.product.product_id.as_str()).collect();
        assert_eq!(ids, ["p4"], "{}", b.name());
        let top = search_products(&cat, &vector(4), &SearchRequest { k: 1, ..Default::default() }).unwrap();
        assert_eq!(top[0].product.name.as_deref(), Some("Renamed"));
        let mut fresh = Product::new("new-one", Label::Counterfeit);
        fresh.category = Some("x".into());
        cat.upsert_product(&fresh).unwrap();
        assert_eq!(cat.records().product("new-one").unwrap().unwrap().label, Label::Counterfeit);
    }
}

/// A brand, name or category with a control character (NUL, CR) or over 200
/// characters, or attributes over 4 KB, are refused the same way on both
/// backends (a clear invalid-field error, nothing written): before, NUL went
/// into `SQLite` and broke a later migration, and was a 500 on PostgreSQL.
#[test]
fn product_text_is_checked_the_same_way_on_both_backends() {
    for b in backends("text") {
        let (cat, _) = b.open(opts()).unwrap();
        let long = "x".repeat(201);
        for (field, bad) in [("brand", "Ac\0me"), ("category", "Kitchen\r\nX-Injected: 1"), ("name", long.as_str())] {
            let mut p = Product::new("bad-text", Label::Authentic);
            match field {
                "brand" => p.brand = Some(bad.into()),
                "category" => p.category = Some(bad.into()),
                _ => p.name = Some(bad.into()),
            }
            let err = cat.upsert_product(&p).unwrap_err();
            assert!(matches!(err, CatalogError::Invalid { field: f, .. } if f == field), "{} {field}: {err}", b.name());
            let mut img = images(1, 1).remove(0);
            img.product = p;
            assert!(matches!(cat.add_images(&[img]).unwrap_err(), CatalogError::Invalid { .. }), "{}", b.name());
        }
        let mut p = Product::new("big-attributes", Label::Authentic);
        p.attributes.insert("notes".into(), serde_json::Value::String("y".repeat(5000)));
        assert!(matches!(cat.upsert_product(&p).unwrap_err(), CatalogError::Invalid { field: "attributes", .. }), "{}", b.name());
        assert!(cat.records().product("bad-text").unwrap().is_none() && cat.records().product("big-attributes").unwrap().is_none());
        assert_eq!(cat.stats().unwrap().counts.images, 0, "nothing written ({})", b.name());
    }
}

/// A photo uploaded to an existing product goes to the product as it is when
/// it is written: one deleted meanwhile (while the photo was embedded) is not
/// brought back, one relabelled meanwhile keeps its new label, and a batch
/// naming a product that is gone writes nothing.
#[test]
fn a_photo_for_a_product_deleted_meanwhile_does_not_bring_it_back() {
    for b in backends("resurrect") {
        let (cat, _) = b.open(opts()).unwrap();
        let all = images(6, 3);
        // Everything but p5's first photo, which is uploaded later.
        cat.add_images(&[&all[..15], &all[16..]].concat()).unwrap();
        assert_eq!(cat.delete_product("p3").unwrap(), 3);
        // The upload read p3 before the delete: its item still names it.
        let late = all[15].clone();
        let mut for_p3 = late.clone();
        for_p3.product = all[9].product.clone();
        assert_eq!(for_p3.product.product_id, "p3");
        let err = cat.add_images_to_existing(&[for_p3.clone()]).unwrap_err();
        assert!(matches!(err, CatalogError::UnknownProduct(ref p) if p == "p3"), "{} {err}", b.name());
        assert!(cat.records().product("p3").unwrap().is_none(), "p3 stays deleted ({})", b.name());
        assert!(!top_ids(&cat, &vector(3), 6).contains(&"p3".to_string()), "{}", b.name());
        // A batch with one product gone writes nothing.
        let before = cat.stats().unwrap().counts.images;
        assert!(cat.add_images_to_existing(&[late.clone(), for_p3]).is_err());
        assert_eq!(cat.stats().unwrap().counts.images, before, "{}", b.name());
        // Relabelled while the photo was embedded: the new label stays.
        let mut relabelled = cat.records().product("p5").unwrap().unwrap();
        relabelled.label = Label::Counterfeit;
        cat.upsert_product(&relabelled).unwrap();
        assert_eq!(late.product.product_id, "p5");
        assert_eq!(late.product.label, Label::Authentic, "the item carries the old label");
        cat.add_images_to_existing(&[late]).unwrap();
        assert_eq!(cat.records().product("p5").unwrap().unwrap().label, Label::Counterfeit, "{}", b.name());
        let top = search_products(&cat, &vector(5), &SearchRequest { k: 1, ..Default::default() }).unwrap();
        assert_eq!((top[0].product.product_id.as_str(), top[0].product.label), ("p5", Label::Counterfeit), "{}", b.name());
    }
}

#[test]
fn a_projection_is_applied_to_searches_and_new_images_and_kept() {
    for b in backends("projection") {
        let (cat, _) = b.open(opts()).unwrap();
        let all = images(12, 4);
        cat.add_images(&all[..40]).unwrap();
        let info = cat.fit_projection(knockoff::catalog::FitOptions { shrinkage: 0.1, dims: Some(16) }).unwrap();
        assert_eq!(info.out_dim, 16);
        // Fitting again on the same photos gives the same projection: nothing is
        // rebuilt or switched (the shared backend keeps searching the collection it has).
        let version = cat.state_version();
        let again = cat.fit_projection(knockoff::catalog::FitOptions { shrinkage: 0.1, dims: Some(16) }).unwrap();
        assert_eq!(again.id, info.id, "{}", b.name());
        assert_eq!(cat.state_version(), version, "no switch to the same projection ({})", b.name());
        assert_eq!(top_ids(&cat, &all[3].embedding, 1)[0], all[3].product.product_id);
        cat.add_images(&all[40..]).unwrap();
        for it in [&all[3], &all[45]] {
            assert_eq!(top_ids(&cat, &it.embedding, 1)[0], it.product.product_id, "{}", b.name());
        }
        drop(cat);
        let (cat, _) = b.open(opts()).unwrap();
        assert_eq!(cat.projection().map(|p| p.info.id.clone()), Some(info.id), "{}", b.name());
        assert_eq!(top_ids(&cat, &all[45].embedding, 1)[0], all[45].product.product_id);
        assert!(cat.clear_projection().unwrap());
        assert!(cat.projection().is_none());
        assert_eq!(top_ids(&cat, &all[45].embedding, 1)[0], all[45].product.product_id);
    }
}

#[test]
fn each_job_is_claimed_once() {
    for b in backends("jobs") {
        let (cat, _) = b.open(opts()).unwrap();
        cat.records().create_job("job-a", "csv", "image,product_id,label\n").unwrap();
        cat.records().create_job("job-b", "csv", "image,product_id,label\n").unwrap();
        let first = cat.records().claim_job("one").unwrap();
        let second = cat.records().claim_job("two").unwrap();
        assert_eq!((first.as_deref(), second.as_deref()), (Some("job-a"), Some("job-b")), "{}", b.name());
        assert_eq!(cat.records().claim_job("three").unwrap(), None, "nothing left to claim");
        assert_eq!(cat.records().job("job-a").unwrap().unwrap().status, knockoff::catalog::JobStatus::Running);
    }
}

#[test]
fn an_idempotency_key_replays_its_answer_refuses_another_request_and_is_freed() {
    use knockoff::catalog::store::{Begun, StoredResponse};
    for b in backends("idempotency") {
        let (cat, _) = b.open(opts()).unwrap();
        let r = cat.records();
        assert_eq!(r.begin_idempotent("shop", "k1", "fp-a", 60_000).unwrap(), Begun::Run, "{}", b.name());
        assert_eq!(r.begin_idempotent("shop", "k1", "fp-a", 60_000).unwrap(), Begun::Running, "the first still runs");
        assert_eq!(r.begin_idempotent("shop", "k1", "fp-b", 60_000).unwrap(), Begun::Mismatch);
        assert_eq!(r.begin_idempotent("other", "k1", "fp-b", 60_000).unwrap(), Begun::Run, "keys are per caller");
        let answer = StoredResponse { status: 202, headers: r#"{"location":"/v1/jobs/j"}"#.into(), body: b"{\"id\":\"j\"}".to_vec() };
        r.finish_idempotent("shop", "k1", Some(&answer)).unwrap();
        assert_eq!(r.begin_idempotent("shop", "k1", "fp-a", 60_000).unwrap(), Begun::Replay(answer));
        // A request that died frees its key at once when it can, after the stale time when it cannot.
        assert_eq!(r.begin_idempotent("shop", "k2", "fp-c", 60_000).unwrap(), Begun::Run);
        r.finish_idempotent("shop", "k2", None).unwrap();
        assert_eq!(r.begin_idempotent("shop", "k2", "fp-d", 60_000).unwrap(), Begun::Run, "a freed key is new");
        assert_eq!(r.begin_idempotent("shop", "k2", "fp-d", -1).unwrap(), Begun::Run, "a stale running key is taken over");
        assert_eq!(r.purge_idempotency(0).unwrap(), 3);
        assert_eq!(r.begin_idempotent("shop", "k1", "fp-b", 60_000).unwrap(), Begun::Run, "purged keys are new");
    }
}

#[test]
fn another_model_is_refused() {
    for b in backends("model") {
        let (cat, _) = b.open(opts()).unwrap();
        cat.add_images(&images(2, 1)).unwrap();
        drop(cat);
        let other = CatalogOptions { model: "other".into(), ..opts() };
        assert!(matches!(b.open(other), Err(CatalogError::ModelMismatch { .. })), "{}", b.name());
        let changed = CatalogOptions { fingerprint: Some("fp-2".into()), ..opts() };
        assert!(matches!(b.open(changed), Err(CatalogError::ModelChanged { .. })), "{}", b.name());
    }
}

/// Shared backend only: a second replica sees the first one's writes within
/// a second, and the stores never serve a vector the store does not hold live.
#[test]
fn replicas_see_each_others_writes_and_strays_are_never_served() {
    let Some(db) = SharedDb::create("replicas") else { return };
    let (a, _) = Catalog::connect(&db.spec, opts()).unwrap();
    let (b, _) = Catalog::connect(&db.spec, opts()).unwrap();
    a.add_images(&images(10, 2)).unwrap();
    // Replicas apply each other's changes every 200 ms (`SYNC_EVERY`); the waits
    // below only catch a change that never arrives.
    eventually("the other replica sees the new images", || top_ids(&b, &vector(3), 1).first().map(String::as_str) == Some("p3"));
    // A projection fitted (or a calibration written) by one replica is swapped in by the other.
    let version = b.state_version();
    let info = a.fit_projection(knockoff::catalog::FitOptions { shrinkage: 0.1, dims: Some(16) }).unwrap();
    eventually("the other replica swaps the projection in", || b.projection().map(|p| p.info.id.clone()) == Some(info.id.clone()));
    assert!(b.state_version() > version);
    assert_eq!(top_ids(&b, &vector(3), 1), vec!["p3"], "searched in the new space");
    let version = b.state_version();
    a.put_file("calibration.json", Some("{}")).unwrap();
    eventually("the other replica loads the calibration", || b.state_version() > version);
    assert_eq!(b.records().file("calibration.json").unwrap().as_deref(), Some("{}"));
    assert!(a.clear_projection().unwrap());
    eventually("the other replica drops the projection", || b.projection().is_none());
    a.delete_product("p3").unwrap();
    eventually("the other replica drops the deleted product", || top_ids(&b, &vector(3), 1).first().map(String::as_str) != Some("p3"));
    // A vector in Milvus with no live image in the store (a writer that died
    // between the two) is never answered, and reconciliation removes it.
    let milvus = knockoff::catalog::vectors::Milvus::connect(&db.spec.vectors).unwrap();
    let coll = format!("knockoff_{}_raw", a.records().meta("catalog_uid").unwrap().unwrap());
    let v = vector(3);
    let stray = knockoff::catalog::vectors::VectorRow { id: 999_999, vector: &v, label: Label::Authentic, brand: None, category: None };
    milvus.insert(&coll, &[stray]).unwrap();
    // (Milvus makes an insert or a delete visible at a later time tick: wait for it, under load too.)
    let stray_in_milvus = || milvus.search(&coll, &v, 50, &Filter::default()).unwrap().iter().any(|(id, _)| *id == 999_999);
    eventually("the stray becomes searchable in Milvus", stray_in_milvus);
    let hits = b.search_images(&v, 5, None, &Filter::default()).unwrap();
    assert!(hits.iter().all(|(id, _, _)| *id != 999_999), "a stray vector was served");
    b.compact().unwrap();
    eventually("reconciliation removes the stray", || !stray_in_milvus());
    // An image committed to the store whose vector never reached Milvus is placed by reconciliation.
    let before = milvus.search(&coll, &vector(4), 50, &Filter::default()).unwrap().len();
    let ids: Vec<i64> = b.records().images_of("p4").unwrap().iter().map(|i| i.id).collect();
    milvus.delete_images(&coll, &ids).unwrap();
    // (An image with no placement at all is left a minute to its writer; one recorded elsewhere is placed at once.)
    for id in &ids {
        let args = [Arg::Text("knockoff_lost"), Arg::Int(*id)];
        a.records().write(|tx| tx.execute("UPDATE images SET vectors_at = $1 WHERE id = $2", &args)).unwrap();
    }
    assert_eq!(b.reconcile().unwrap(), 2);
    eventually("the placed vectors become searchable", || {
        milvus.search(&coll, &vector(4), 50, &Filter::default()).unwrap().len() == before
    });
    assert_eq!(top_ids(&b, &vector(4), 1), vec!["p4"]);
}

/// `migrate`'s copy, both ways: ids, vectors and the projection travel; a
/// second run (a resumed one) changes nothing; the answers are the same.
#[test]
fn migration_round_trips_with_the_same_answers_and_resumes() {
    use knockoff::catalog::transfer::{check_counts, copy_rows};
    use knockoff::catalog::Location;
    let Some(db) = SharedDb::create("migrate") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (folder, _) = Catalog::open(&dir.path().join("a"), opts()).unwrap();
    let all = images(12, 4);
    folder.add_images(&all).unwrap();
    folder.fit_projection(knockoff::catalog::FitOptions { shrinkage: 0.1, dims: Some(16) }).unwrap();
    folder.delete_product("p2").unwrap();
    folder.persist().unwrap();
    let (a, shared, back) =
        (Location::Folder(dir.path().join("a")), Location::Shared(db.spec.clone()), Location::Folder(dir.path().join("b")));
    for _ in 0..2 {
        let r = copy_rows(&a, &shared, &mut |_| {}).unwrap();
        assert_eq!((r.products, r.images), (11, 44), "live rows only, every run");
    }
    let (on_shared, _) = Catalog::connect(&db.spec, opts()).unwrap();
    check_counts(&folder, &on_shared).unwrap();
    assert_eq!(on_shared.searchable_count().unwrap(), 44, "every copied image has its vector in Milvus");
    copy_rows(&shared, &back, &mut |_| {}).unwrap();
    let (folder_back, _) = Catalog::open(&dir.path().join("b"), opts()).unwrap();
    check_counts(&on_shared, &folder_back).unwrap();
    assert_eq!(folder_back.projection().map(|p| p.info.id.clone()), folder.projection().map(|p| p.info.id.clone()));
    let answer = |cat: &Catalog, q: &[f32]| -> Vec<(String, i64)> {
        search_products(cat, q, &SearchRequest { k: 5, ..Default::default() })
            .unwrap()
            .into_iter()
            .map(|m| (m.product.product_id.clone(), m.best.image_id))
            .collect()
    };
    for it in all.iter().step_by(5) {
        let want = answer(&folder, &it.embedding);
        assert_eq!(answer(&on_shared, &it.embedding), want, "the shared copy answers the same (same image ids)");
        assert_eq!(answer(&folder_back, &it.embedding), want, "and so does the folder it went back to");
    }
    // Counts that disagree are reported, not passed.
    folder_back.delete_product("p3").unwrap();
    assert!(check_counts(&on_shared, &folder_back).is_err());
}
