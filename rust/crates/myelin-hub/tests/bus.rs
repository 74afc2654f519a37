//! [`BusDevice::wait_validated`] against a stand-in `org.myelin.Update1` on a private bus: it
//! returns when the service announces `Trial` false in `PropertiesChanged`, after one read. And
//! [`BusDevice`]'s `update_command`: real programs answering for the product.

#![allow(clippy::unwrap_used)]

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Duration;

use myelin_api::update::{BUS_NAME, OBJECT_PATH};
use myelin_hub::bus::BusDevice;
use myelin_hub::client::Device;
use myelin_testbus::TestBus;
use tokio::sync::mpsc;

/// The one property the wait reads; every read is reported to the test.
struct FakeUpdate {
    trial: bool,
    reads: mpsc::UnboundedSender<bool>,
}

#[zbus::interface(name = "org.myelin.Update1")]
impl FakeUpdate {
    /// Whether the running firmware is on trial.
    #[zbus(property)]
    async fn trial(&self) -> bool {
        let _ = self.reads.send(self.trial);
        self.trial
    }

    /// Another property, to check that its changes are not taken for a validation.
    #[zbus(property)]
    async fn progress(&self) -> u32 {
        7
    }
}

#[tokio::test]
async fn wait_validated_follows_the_trial_property_signal() {
    let bus = TestBus::open();
    let (reads_tx, mut reads) = mpsc::unbounded_channel();
    let service = zbus::connection::Builder::address(bus.address())
        .name(BUS_NAME)
        .serve_at(
            OBJECT_PATH,
            FakeUpdate {
                trial: true,
                reads: reads_tx,
            },
        )
        .build()
        .await
        .unwrap();
    let iface = service
        .object_server()
        .interface::<_, FakeUpdate>(OBJECT_PATH)
        .await
        .unwrap();
    let device = BusDevice::connect(Some(bus.address()), vec![], vec![])
        .await
        .unwrap();

    let wait = device.wait_validated();
    let test = async {
        // The one read, after the subscription: on trial.
        assert_eq!(reads.recv().await, Some(true));
        // Signals sent by hand: the generated `*_changed` would read the property itself.
        let announce = |name: &'static str, value: zbus::Variant<'static>| {
            let emitter = iface.signal_emitter().clone();
            async move {
                zbus::fdo::Properties::properties_changed(
                    &emitter,
                    "org.myelin.Update1".try_into().unwrap(),
                    HashMap::from([(name, value)]),
                    Cow::Borrowed(&[]),
                )
                .await
                .unwrap();
            }
        };
        // A change of another property is not a validation.
        announce("Progress", zbus::Variant::U32(8)).await;
        // The validation, announced with its value.
        iface.get_mut().await.trial = false;
        announce("Trial", zbus::Variant::Bool(false)).await;
    };
    // A guard against a hang, not a timing check.
    tokio::time::timeout(Duration::from_secs(60), async { tokio::join!(wait, test) })
        .await
        .expect("wait_validated did not return after Trial became false");
    // No second read: the signal's value was used (the properties signal carries it).
    assert!(reads.try_recv().is_err());
}

/// The product's `update_command` decides; one that fails, says nonsense or does not exist lets
/// the update install.
#[tokio::test]
async fn the_update_command_decides_and_a_broken_one_lets_the_update_install() {
    use myelin_hub::message::{FirmwareMeta, UpdateInfo};
    use myelin_hub::policy::Decision;
    let bus = TestBus::open();
    let offer = UpdateInfo {
        firmware_url: "https://fw.example/2.0.0.fw".into(),
        firmware_meta: FirmwareMeta {
            version: Some("2.0.0".into()),
            ..FirmwareMeta::default()
        },
        size: None,
    };
    let decide = |script: &str| {
        let argv = if script.is_empty() {
            vec![]
        } else {
            vec!["/bin/sh".to_owned(), "-c".to_owned(), script.to_owned()]
        };
        let address = bus.address().to_owned();
        let offer = offer.clone();
        async move {
            let device = BusDevice::connect(Some(&address), vec![], argv)
                .await
                .unwrap();
            device.update_decision(&offer).await
        }
    };
    assert_eq!(decide("").await, Decision::Apply);
    assert_eq!(
        decide(r#"echo "reschedule 600 busy until $MYELIN_UPDATE_VERSION""#).await,
        Decision::Reschedule(Duration::from_secs(600), "busy until 2.0.0".into())
    );
    assert_eq!(
        decide("echo ignore pinned").await,
        Decision::Ignore("pinned".into())
    );
    assert_eq!(decide("echo later").await, Decision::Apply);
    assert_eq!(decide("echo ignore; exit 3").await, Decision::Apply);
    assert_eq!(decide("exec /nonexistent/program").await, Decision::Apply);
}
