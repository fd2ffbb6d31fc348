//! The `MenuStore` contract: menus upserted, loaded and 86'd, and catalog
//! diffs applied. Cases take the narrow port: menus need nothing else.

use domain::menu::{Category, Item, Size, Station};
use domain::ports::{MenuStore, PortError};

use super::*;

/// What a menu case takes.
pub type Menus = Arc<dyn MenuStore>;

/// Calls `$callback! { menus: case, case, ... }` with every `MenuStore` case.
#[macro_export]
macro_rules! menu_store_cases {
    ($callback:ident) => {
        $callback! {
            menus:
            fresh_store_has_no_menus,
            menus_are_upserted_loaded_and_86d,
            menu_diff_adds_changes_removes_and_keeps_availability,
        }
    };
}

/// The names of every `MenuStore` case, in the order `run_all` runs them.
pub const CASES: &[&str] = menu_store_cases!(case_names);

/// A new store has no stores or menus, and is healthy.
pub async fn fresh_store_has_no_menus(store: Menus) {
    store.health().await.expect("a fresh store is healthy");
    assert_eq!(store.list_stores().await.unwrap(), vec![]);
    assert_eq!(store.load_menu(&demo_store()).await.unwrap(), None);
}

/// A menu comes back as it was upserted; availability changes one item of
/// one store; an upsert replaces the whole menu; unknown stores and skus
/// are told apart.
pub async fn menus_are_upserted_loaded_and_86d(store: Menus) {
    let menu = demo_menu();
    let id = menu.store.id.clone();
    store.upsert_menu(&menu).await.unwrap();
    assert_eq!(store.load_menu(&id).await.unwrap(), Some(menu.clone()));
    assert_eq!(store.list_stores().await.unwrap(), vec![menu.store.clone()]);
    assert_eq!(store.load_menu(&uptown()).await.unwrap(), None, "unknown store");

    // 86 the latte: only that item of that store changes.
    assert!(store.set_availability(&id, "latte", false).await.unwrap());
    let mut expected = menu.clone();
    expected
        .items
        .iter_mut()
        .filter(|i| i.sku == "latte")
        .for_each(|i| i.available = false);
    assert_eq!(store.load_menu(&id).await.unwrap(), Some(expected.clone()));
    // Setting the value it already has still finds the item.
    assert!(store.set_availability(&id, "latte", false).await.unwrap());
    assert!(!store.set_availability(&id, "no-such-sku", false).await.unwrap());
    assert!(!store.set_availability(&uptown(), "latte", false).await.unwrap());
    assert!(store.set_availability(&id, "latte", true).await.unwrap());
    assert_eq!(store.load_menu(&id).await.unwrap(), Some(menu.clone()));

    // A second store with its own copy of the menu.
    let mut other = demo_menu();
    other.store.id = uptown();
    other.store.name = "Rushhour Uptown".into();
    other.store.time_zone = "America/New_York".into();
    store.upsert_menu(&other).await.unwrap();
    assert!(store.set_availability(&uptown(), "croissant", false).await.unwrap());
    assert_eq!(
        store.load_menu(&id).await.unwrap(),
        Some(menu.clone()),
        "86ing an item of one store leaves the others alone"
    );
    assert_eq!(
        store.list_stores().await.unwrap(),
        vec![menu.store.clone(), other.store.clone()],
        "stores are listed by id"
    );

    // Upserting replaces the store row, the categories and the items:
    // removed items and categories are gone, availability is as given.
    let mut replaced = menu.clone();
    replaced.store.name = "Rushhour Downtown".into();
    replaced.store.currency = "EUR".into();
    replaced.categories.retain(|c| c.code == "coffee" || c.code == "tea");
    replaced.categories[0].name = "Espresso bar".into();
    replaced.items.retain(|i| i.station == Station::Barista);
    replaced.items.reverse();
    replaced.items[0].available = false;
    replaced.items[1].sizes[0].price += 10;
    store.upsert_menu(&replaced).await.unwrap();
    assert_eq!(store.load_menu(&id).await.unwrap(), Some(replaced.clone()));
    assert_eq!(store.list_stores().await.unwrap()[0], replaced.store);
    assert!(
        !store.set_availability(&id, "croissant", true).await.unwrap(),
        "a removed item is no longer on the menu"
    );
    let mut other_now = other.clone();
    other_now
        .items
        .iter_mut()
        .filter(|i| i.sku == "croissant")
        .for_each(|i| i.available = false);
    assert_eq!(store.load_menu(&uptown()).await.unwrap(), Some(other_now));
}

/// A catalog diff: categories upserted by code, changed items rewritten
/// but keeping the store's availability and place, new items appended and
/// available, removed items gone; other stores untouched; an unknown store
/// is `NotFound`.
pub async fn menu_diff_adds_changes_removes_and_keeps_availability(store: Menus) {
    let menu = demo_menu();
    let id = menu.store.id.clone();
    store.upsert_menu(&menu).await.unwrap();
    let mut other = demo_menu();
    other.store.id = uptown();
    store.upsert_menu(&other).await.unwrap();
    assert!(store.set_availability(&id, "latte", false).await.unwrap());

    let mut categories = menu.categories.clone();
    categories[0].name = "Espresso bar".into();
    categories.push(Category {
        code: "seasonal".into(),
        name: "Seasonal".into(),
        position: 0,
    });
    let mut latte = menu.items.iter().find(|i| i.sku == "latte").unwrap().clone();
    latte.name = "Caffè latte".into();
    latte.sizes[0].price += 25;
    latte.available = true;
    let pumpkin = Item {
        sku: "pumpkin-latte".into(),
        name: "Pumpkin spice latte".into(),
        category: "seasonal".into(),
        station: Station::Barista,
        sizes: vec![Size {
            code: "medium".into(),
            name: "Medium 12oz".into(),
            price: 575,
        }],
        modifiers: latte.modifiers.clone(),
        available: false,
    };
    store
        .apply_menu_diff(
            &id,
            &categories,
            &[latte.clone(), pumpkin.clone()],
            &["croissant".into()],
        )
        .await
        .unwrap();

    let mut want = menu.clone();
    want.categories = categories.clone();
    want.categories
        .sort_by(|a, b| (a.position, &a.code).cmp(&(b.position, &b.code)));
    want.items.retain(|i| i.sku != "croissant");
    for i in want.items.iter_mut().filter(|i| i.sku == "latte") {
        *i = Item {
            available: false,
            ..latte.clone()
        };
    }
    want.items.push(Item {
        available: true,
        ..pumpkin.clone()
    });
    assert_eq!(store.load_menu(&id).await.unwrap(), Some(want.clone()));
    assert_eq!(
        store.load_menu(&uptown()).await.unwrap(),
        Some(other),
        "other stores untouched"
    );

    // An empty diff changes nothing; the new item can be 86'd like any.
    store.apply_menu_diff(&id, &[], &[], &[]).await.unwrap();
    assert_eq!(store.load_menu(&id).await.unwrap(), Some(want));
    assert!(store.set_availability(&id, "pumpkin-latte", false).await.unwrap());
    assert!(!store.set_availability(&id, "croissant", true).await.unwrap());

    let nowhere = StoreId("nowhere".into());
    assert_eq!(
        store.apply_menu_diff(&nowhere, &categories, &[pumpkin], &[]).await,
        Err(PortError::NotFound)
    );
    assert_eq!(store.load_menu(&nowhere).await.unwrap(), None);
}
