//! The review loop on both backends (the embedded folder and PostgreSQL +
//! Milvus): a lookup recorded as a case, listed and paged, decided once
//! (a stale version refused), the decision teaching the catalog at once,
//! undone, audited, repaired after a crash, and photos dropped by retention.

use knockoff::catalog::store::{CaseQuery, CaseSort};
use knockoff::catalog::{Catalog, Label, NewImage, Product};
use knockoff::embed::{DecodeLimits, Described};
use knockoff::review::{self, Decision, DecisionInput, ListingContext, ReviewError, Seen};
use knockoff::search::{lookup, search_products, Lookup, SearchRequest, VerdictConfig};

mod common;

use common::synth::{near, opts, vector};
use common::{backends, eventually, fixture};

/// A small catalog: `bag` (authentic, Acme) near vector(1), `shoe` (counterfeit, Acme) near vector(2).
fn catalog_items() -> Vec<NewImage> {
    let mut bag = Product::new("bag", Label::Authentic);
    bag.brand = Some("Acme".into());
    bag.name = Some("Bag".into());
    let mut shoe = Product::new("shoe", Label::Counterfeit);
    shoe.brand = Some("Acme".into());
    let item = |p: &Product, center: u64, j: u64| NewImage {
        product: p.clone(),
        source: format!("{}-{j}.jpg", p.product_id),
        sha256: format!("{}-{j}", p.product_id),
        width: 10,
        height: 10,
        embedding: near(center, j),
        thumbnail: None,
        copy_features: None,
    };
    (0..3).map(|j| item(&bag, 1, j)).chain((0..3).map(|j| item(&shoe, 2, j + 10))).collect()
}

fn answer(cat: &Catalog, v: &[f32]) -> Lookup {
    let d = Described { vector: v.to_vec(), copy: None, regions: Vec::new() };
    lookup(cat, &d, &SearchRequest::default(), &VerdictConfig::default()).unwrap()
}

/// Records `photo` (a fixture file) seen with vector `v` from `seller`.
fn record(cat: &Catalog, photo: &str, v: &[f32], seller: &str) -> i64 {
    let bytes = std::fs::read(fixture(&format!("photos/{photo}.jpg"))).unwrap();
    record_as(cat, &bytes, v, seller, &format!("l-{photo}"))
}

/// Records `bytes` seen with vector `v` from `seller` on listing `listing`.
fn record_as(cat: &Catalog, bytes: &[u8], v: &[f32], seller: &str, listing: &str) -> i64 {
    let sha = knockoff::util::sha256_hex(bytes);
    let context = ListingContext { seller_id: Some(seller.into()), listing_id: Some(listing.into()), ..Default::default() };
    let a = answer(cat, v);
    let seen = Seen {
        photo: bytes,
        sha256: &sha,
        embedding: v,
        regions: &[],
        model: "test-model",
        answer: &a,
        context: &context,
        calibration: None,
    };
    review::record(cat, &seen).unwrap()
}

fn top(cat: &Catalog, v: &[f32]) -> String {
    search_products(cat, v, &SearchRequest { k: 1, ..Default::default() }).unwrap()[0].product.product_id.clone()
}

fn input(decision: Decision, product: Option<&str>) -> DecisionInput {
    DecisionInput { decision, product_id: product.map(str::to_string), note: Some("seen on the listing".into()) }
}

#[test]
fn a_case_is_recorded_listed_decided_once_teaches_the_catalog_and_is_undone() {
    for b in backends("review") {
        let (cat, _) = b.open(opts()).unwrap();
        cat.add_images(&catalog_items()).unwrap();
        let limits = DecodeLimits::default();
        // A listing photo near the authentic bag, but not one of its references.
        let listing = near(1, 99);
        let id = record(&cat, "coffee", &listing, "s1");
        let case = review::get(&cat, id).unwrap();
        assert_eq!((case.status.as_str(), case.version), ("open", 1), "{}", b.name());
        assert_eq!(case.context["seller_id"], "s1");
        assert_eq!(case.top_product.as_deref(), Some("bag"));
        assert_eq!(case.answer["matches"][0]["product_id"], "bag");
        assert_eq!(review::photo(&cat, id).unwrap().unwrap(), std::fs::read(fixture("photos/coffee.jpg")).unwrap());

        // A second analyst's stale version is refused, and nothing is added.
        let stale = review::decide(&cat, limits, id, 0, Some("bob"), &input(Decision::Counterfeit, Some("bag")));
        assert!(matches!(stale, Err(ReviewError::Stale { current: 1, .. })), "{stale:?}");
        assert!(cat.records().product("bag~counterfeit").unwrap().is_none());

        // Counterfeit of the authentic bag: the photo becomes a reference of the linked counterfeit product.
        let decided = review::decide(&cat, limits, id, 1, Some("ana"), &input(Decision::Counterfeit, Some("bag"))).unwrap();
        assert_eq!((decided.status.as_str(), decided.version), ("decided", 2));
        let d = decided.decision.clone().unwrap();
        assert_eq!((d.decision.as_str(), d.product_id.as_deref(), d.by.as_deref()), ("counterfeit", Some("bag~counterfeit"), Some("ana")));
        let fake = cat.records().product("bag~counterfeit").unwrap().unwrap();
        assert_eq!((fake.label, fake.brand.as_deref()), (Label::Counterfeit, Some("Acme")));
        assert_eq!(fake.attributes["imitates"], "bag");
        let reference = d.reference_image.expect("a reference image");
        let images = cat.records().images_of("bag~counterfeit").unwrap();
        assert_eq!(images.iter().map(|i| (i.id, i.source.as_str())).collect::<Vec<_>>(), vec![(reference, &*format!("case:{id}"))]);
        eventually("the next lookup of the photo finds the fake", || top(&cat, &listing) == "bag~counterfeit");

        // Deciding again needs an undo first; the undo opens the case and removes the reference.
        let again = review::decide(&cat, limits, id, 2, None, &input(Decision::Authentic, Some("bag")));
        assert!(matches!(again, Err(ReviewError::Invalid { field: "decision", .. })), "{again:?}");
        let undone = review::undo(&cat, id, 2, Some("ana")).unwrap();
        assert_eq!((undone.status.as_str(), undone.version, undone.decision.is_none()), ("open", 3, true));
        assert!(cat.records().images_of("bag~counterfeit").unwrap().is_empty());
        assert!(cat.records().image(reference).unwrap().unwrap().deleted);
        eventually("the undone reference is no longer found", || top(&cat, &listing) == "bag");
        let audit = undone.audit.unwrap();
        assert_eq!(audit.iter().map(|a| a.action.as_str()).collect::<Vec<_>>(), ["decide", "undo"]);
        assert!(audit[0].before.is_none() && audit[0].after.as_deref().unwrap().contains("bag~counterfeit"));
        assert!(audit[1].before.as_deref().unwrap().contains("counterfeit") && audit[1].after.is_none());
        assert_eq!(audit[1].actor.as_deref(), Some("ana"));

        // Bad decisions: an unknown product, an authentic photo of a counterfeit product, an unknown case.
        let unknown = review::decide(&cat, limits, id, 3, None, &input(Decision::Authentic, Some("nope")));
        assert!(matches!(unknown, Err(ReviewError::UnknownProduct(ref p)) if p == "nope"), "{unknown:?}");
        let contradiction = review::decide(&cat, limits, id, 3, None, &input(Decision::Authentic, Some("shoe")));
        assert!(matches!(contradiction, Err(ReviewError::Invalid { field: "product_id", .. })), "{contradiction:?}");
        assert!(matches!(review::get(&cat, 424_242), Err(ReviewError::UnknownCase(424_242))));

        // Authentic with the top match by default: a reference of the bag, marked as from a listing.
        let ok = review::decide(&cat, limits, id, 3, None, &input(Decision::Authentic, None)).unwrap();
        let r = ok.decision.unwrap().reference_image.unwrap();
        assert!(cat.records().images_of("bag").unwrap().iter().any(|i| i.id == r && i.source == format!("case:{id}")));
        // A listing photo made a reference ranks its product only for the same photo or a copy of it:
        // a photo unlike any catalog image, decided authentic for the bag, then a photo merely like it.
        let far = vector(5);
        let case = record(&cat, "astronaut", &far, "s9");
        let r = review::decide(&cat, limits, case, 1, None, &input(Decision::Authentic, Some("bag")))
            .unwrap()
            .decision
            .unwrap()
            .reference_image
            .unwrap();
        let best_images = |q: &[f32]| -> Vec<i64> {
            search_products(&cat, q, &SearchRequest { k: 10, ..Default::default() }).unwrap().iter().map(|m| m.best.image_id).collect()
        };
        eventually("the reference is found for the photo itself", || best_images(&far).first() == Some(&r));
        let other: Vec<f32> = far.iter().zip(vector(9)).map(|(a, b)| a + 0.9 * b).collect();
        let norm = other.iter().map(|x| x * x).sum::<f32>().sqrt();
        let other: Vec<f32> = other.iter().map(|x| x / norm).collect();
        let cos: f32 = other.iter().zip(&far).map(|(a, b)| a * b).sum();
        assert!(cos > 0.5 && cos < knockoff::catalog::LISTING_MATCH_MIN, "{cos}");
        assert!(!best_images(&other).contains(&r), "a merely similar photo is not ranked by the listing reference ({})", b.name());
    }
}

#[test]
fn cases_are_listed_by_review_worth_filtered_and_paged() {
    for b in backends("review_list") {
        let (cat, _) = b.open(opts()).unwrap();
        cat.add_images(&catalog_items()).unwrap();
        // Near the counterfeit shoe, near the bag, far from both.
        let ids: Vec<i64> = [(near(2, 50), "s1"), (near(1, 51), "s2"), (vector(77), "s1"), (near(2, 52), "s3")]
            .iter()
            .enumerate()
            .map(|(i, (v, s))| record(&cat, ["coffee", "chelsea", "astronaut", "rocket"][i], v, s))
            .collect();
        let all = review::list(&cat, CaseQuery { limit: 10, ..Default::default() }, None).unwrap();
        assert_eq!(all.items.len(), 4, "{}", b.name());
        assert!(all.items.windows(2).all(|w| w[0].priority >= w[1].priority), "review worth first");
        assert!(!all.has_more);
        // Pages of one, each starting after the last case of the one before, give the same order.
        let mut paged: Vec<i64> = Vec::new();
        loop {
            let after = paged.last().map(i64::to_string);
            let page = review::list(&cat, CaseQuery { limit: 1, ..Default::default() }, after.as_deref()).unwrap();
            paged.extend(page.items.iter().map(|c| c.id));
            if !page.has_more {
                break;
            }
        }
        assert_eq!(paged, all.items.iter().map(|c| c.id).collect::<Vec<_>>());
        let newest = review::list(&cat, CaseQuery { limit: 10, sort: CaseSort::Time, ..Default::default() }, None).unwrap();
        assert_eq!(newest.items.iter().map(|c| c.id).collect::<Vec<_>>(), ids.iter().rev().copied().collect::<Vec<_>>());
        let newest_after = CaseQuery { limit: 10, sort: CaseSort::Time, ..Default::default() };
        let rest = review::list(&cat, newest_after, Some(&ids[3].to_string())).unwrap();
        assert_eq!(rest.items.iter().map(|c| c.id).collect::<Vec<_>>(), ids[..3].iter().rev().copied().collect::<Vec<_>>());
        let s1 = review::list(&cat, CaseQuery { limit: 10, seller_id: Some("s1".into()), ..Default::default() }, None).unwrap();
        assert_eq!(s1.items.len(), 2);
        let fakes = CaseQuery { limit: 10, min_p_counterfeit: Some(0.5), ..Default::default() };
        let fakes = review::list(&cat, fakes, None).unwrap();
        assert!(fakes.items.iter().all(|c| c.p_counterfeit >= 0.5) && !fakes.items.is_empty(), "{:?}", fakes.items);
        // Deciding moves a case out of the open queue.
        review::decide(&cat, DecodeLimits::default(), ids[0], 1, None, &input(Decision::Skip, None)).unwrap();
        let open = review::list(&cat, CaseQuery { limit: 10, status: Some("open".into()), ..Default::default() }, None).unwrap();
        assert_eq!(open.items.len(), 3);
        assert!(review::list(&cat, CaseQuery { limit: 0, ..Default::default() }, None).is_err());
        assert!(review::list(&cat, CaseQuery { limit: 5, ..Default::default() }, Some("garbage")).is_err());
        assert!(review::list(&cat, CaseQuery { limit: 5, ..Default::default() }, Some("999999")).is_err(), "names no case");
    }
}

#[test]
fn a_reference_no_case_names_is_removed_and_old_photos_are_dropped_but_not_decisions() {
    for b in backends("review_upkeep") {
        let (cat, _) = b.open(opts()).unwrap();
        cat.add_images(&catalog_items()).unwrap();
        let v = near(1, 60);
        let id = record(&cat, "chelsea", &v, "s1");
        // A process that stopped after adding a decision's reference, before recording the decision.
        let mut stray = catalog_items().remove(0);
        (stray.source, stray.sha256, stray.embedding) = (format!("case:{id}"), "stray".into(), v.clone());
        let added = cat.add_images(&[stray]).unwrap()[0].unwrap();
        assert_eq!(review::repair(&cat).unwrap(), 1, "{}", b.name());
        assert!(cat.records().image(added).unwrap().unwrap().deleted);
        assert_eq!(review::repair(&cat).unwrap(), 0);

        let decided = review::decide(&cat, DecodeLimits::default(), id, 1, None, &input(Decision::NotInCatalog, None)).unwrap();
        assert!(decided.decision.as_ref().unwrap().reference_image.is_none(), "not_in_catalog adds no reference");
        // Retention drops the photo (0 days: everything stored before now), never the case or its decision.
        cat.records().purge_case_photos(0).unwrap();
        assert!(review::photo(&cat, id).unwrap().is_none());
        let after = review::get(&cat, id).unwrap();
        assert_eq!(after.decision, decided.decision);
        assert_eq!(after.audit.unwrap().len(), 1);
    }
}

#[test]
fn reviewed_cases_join_self_calibration_as_labelled_lookups() {
    use knockoff::fit::{self_calibrate, SelfCalOptions};
    let dir = tempfile::tempdir().unwrap();
    let (cat, _) = Catalog::open(dir.path(), opts()).unwrap();
    cat.add_images(&common::synth::images(12, 4)).unwrap();
    let fitted = |cat: &Catalog| self_calibrate(cat, None, &SelfCalOptions::default()).unwrap().unwrap().calibration;
    let before = fitted(&cat);
    assert!(!before.queries[0].contains("reviewed"), "{:?}", before.queries);
    for i in 0..40u64 {
        let product = i % 12;
        let v = near(product, 500 + i);
        let id = record(&cat, "rocket", &v, "s1");
        let p = common::synth::product(product);
        let (decision, product_id) = match (i % 10, p.label) {
            (0..=3, _) if i < 4 => (Decision::NotInCatalog, None),
            (_, Label::Counterfeit) => (Decision::Counterfeit, Some(p.product_id.as_str())),
            _ => (Decision::Authentic, Some(p.product_id.as_str())),
        };
        review::decide(&cat, DecodeLimits::default(), id, 1, None, &input(decision, product_id)).unwrap();
    }
    let after = fitted(&cat);
    assert!(after.queries[0].contains("with 40 reviewed cases (36 of a catalogued product, 4 of none)"), "{:?}", after.queries);
    assert!(after.n_queries > before.n_queries, "{} vs {}", after.n_queries, before.n_queries);
}

/// Records `bytes` seen with vector `v` from `seller`.
fn record_bytes(cat: &Catalog, bytes: &[u8], v: &[f32], seller: &str) -> i64 {
    record_as(cat, bytes, v, seller, &format!("l-{seller}"))
}

fn edited(photo: &str, edit: knockoff::synth::copies::Edit, seed: u64) -> Vec<u8> {
    use knockoff::synth::copies::{apply, Rng};
    let src = image::open(fixture(&format!("photos/{photo}.jpg"))).unwrap().to_rgb8();
    let img = apply(edit, &src, &[], &mut Rng::new(seed)).image;
    let mut buf = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, 90).encode_image(&img).unwrap();
    buf
}

#[test]
fn listings_that_copy_one_photo_form_one_seller_network_and_other_photos_stay_alone() {
    use knockoff::review::clusters::{self, Clusterer};
    use knockoff::search::copy::CopyModel;
    use knockoff::synth::copies::Edit;
    for b in backends("clusters") {
        let (cat, _) = b.open(opts()).unwrap();
        cat.add_images(&catalog_items()).unwrap();
        let coffee = std::fs::read(fixture("photos/coffee.jpg")).unwrap();
        // All four photos sit near one another under the model: only the copy check tells them apart.
        let first = record_bytes(&cat, &coffee, &near(1, 50), "s1");
        let cropped = record_bytes(&cat, &edited("coffee", Edit::Crop, 3), &near(1, 51), "s2");
        let same = record_bytes(&cat, &coffee, &near(1, 52), "s3");
        let other = record_bytes(&cat, &std::fs::read(fixture("photos/chelsea.jpg")).unwrap(), &near(1, 53), "s4");
        assert_eq!(review::get(&cat, first).unwrap().cluster_id, None, "not clustered before the clusterer runs ({})", b.name());
        let mut clusterer = Clusterer::new("test-model", CopyModel::default(), DecodeLimits::default());
        assert_eq!(clusterer.catch_up(&cat).unwrap(), 4);
        let cluster_of = |id: i64| review::get(&cat, id).unwrap().cluster_id;
        assert_eq!(
            [first, cropped, same, other].map(cluster_of),
            [Some(first), Some(first), Some(first), Some(other)],
            "the copies join the first listing's network, the other photo stays alone ({})",
            b.name()
        );

        // A clusterer started later (another process taking the lease) reads the clustered cases again.
        let mut later = Clusterer::new("test-model", CopyModel::default(), DecodeLimits::default());
        later.reload(&cat).unwrap();
        let padded = record_bytes(&cat, &edited("chelsea", Edit::Padding, 4), &near(1, 54), "s5");
        assert_eq!(later.step(&cat).unwrap(), Some((padded, other)), "{}", b.name());

        let page = clusters::list(&cat, 1, None).unwrap();
        assert!(page.has_more);
        let newest = &page.items[0];
        assert_eq!((newest.id, newest.cases, newest.sellers.clone()), (other, 2, vec!["s4".to_string(), "s5".into()]));
        let rest = clusters::list(&cat, 10, Some(&other.to_string())).unwrap();
        assert!(!rest.has_more);
        let network = &rest.items[0];
        assert_eq!((network.id, network.cases, network.sellers.len()), (first, 3, 3), "{network:?}");
        let kinds: Vec<_> = network.links.iter().map(|l| (l.a, l.b, l.kind)).collect();
        assert!(kinds.contains(&(first, same, clusters::LinkKind::SamePhoto)), "{kinds:?}");
        assert!(
            network.links.iter().any(|l| l.b == cropped && l.kind == clusters::LinkKind::Copy && l.p_copy.unwrap() >= 0.5),
            "{kinds:?}"
        );
        let shared: Vec<_> = network.photos.iter().map(|p| (p.cases.clone(), p.url.clone())).collect();
        assert_eq!(shared[0], (vec![first, same], format!("/v1/cases/{first}/photo")));
        assert_eq!(network.listings.iter().map(|l| l.listing.seller_id.clone().unwrap()).collect::<Vec<_>>(), ["s1", "s2", "s3"]);

        // A case read alone shows its network; a case alone shows none.
        assert_eq!(review::get(&cat, cropped).unwrap().cluster.map(|c| c.id), Some(first));
        let alone = record_bytes(&cat, &std::fs::read(fixture("photos/rocket.jpg")).unwrap(), &vector(7), "s6");
        later.catch_up(&cat).unwrap();
        let read = review::get(&cat, alone).unwrap();
        assert_eq!((read.cluster_id, read.cluster.is_none()), (Some(alone), true));
        assert!(clusters::get(&cat, alone).unwrap().is_none());
    }
}
