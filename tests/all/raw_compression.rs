//! Raw mail kept compressed (issue 27, item 3), on both backends: every
//! message comes back byte for byte (download, processing, reprocessing),
//! report mail takes less room than received, the inbox still lists
//! subjects, and rows written before compression still read.

use std::io::Write;

use dmarcd::inbox::{Envelope, Inbox};
use dmarcd::store::{Requeue, Store};
use dmarcd::worker::{Worker, WorkerConfig};
use dmarcd::{testing, Limits};

use crate::common;

/// Bytes as received and as stored, over every message.
async fn sizes(store: &Store) -> (i64, i64) {
    let db = store.db();
    let (received,): (i64,) = db
        .fetch_one(&db.statement(
            "SELECT CAST(sum(size) AS BIGINT) FROM inbox_messages",
            Vec::new(),
        ))
        .await
        .unwrap();
    let (stored,): (i64,) = db
        .fetch_one(&db.statement(
            "SELECT CAST(sum(length(raw)) AS BIGINT) FROM inbox_raw",
            Vec::new(),
        ))
        .await
        .unwrap();
    (received, stored)
}

/// A Microsoft-style report mail: a gzip report as one line of base64.
/// Stored (level 0) gzip makes a few thousand records span more than one
/// stored chunk.
fn microsoft_mail(records: usize) -> Vec<u8> {
    let xml = testing::aggregate_report(records).to_xml();
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
    gzip.write_all(xml.as_bytes()).unwrap();
    common::email_with_attachment(
        "application/gzip",
        "protection.outlook.com!example.com!1711756800!1711843200.xml.gz",
        &gzip.finish().unwrap(),
        true,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_mail_is_kept_smaller_and_comes_back_byte_for_byte() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let inbox = Inbox::new(store.clone());
        let big = microsoft_mail(6_500);
        assert!(
            big.len() > 4 * 1024 * 1024 + 1024,
            "spans two chunks: {}",
            big.len()
        );
        let plain_xml = testing::aggregate_report(500).to_xml().into_bytes();
        let ruf = common::corpus("failure/dmarc_ruf_report_linkedin.eml");
        let mut ids = Vec::new();
        for (raw, name) in [
            (&big, "microsoft.eml"),
            (&plain_xml, "report.xml"),
            (&ruf, "ruf.eml"),
            (&b"tiny".to_vec(), "tiny.txt"),
        ] {
            ids.push((
                inbox.accept(raw, &Envelope::import(name)).await.unwrap().id,
                raw.clone(),
            ));
        }
        for (id, raw) in &ids {
            assert_eq!(
                store.message_raw(*id).await.unwrap().as_ref(),
                Some(raw),
                "{backend}: message {id}"
            );
        }
        let (received, stored) = sizes(&store).await;
        assert!(
            stored * 10 < received * 9,
            "{backend}: {stored} stored for {received} received"
        );

        // Workers read the compressed bytes: the reports are stored, and
        // again after reprocessing.
        let worker = Worker::new(
            store.clone(),
            Limits::default(),
            "w",
            WorkerConfig::default(),
        );
        worker.run_until_idle().await.unwrap();
        let counts = store.report_counts().await.unwrap();
        assert_eq!(counts.aggregate_reports, 2, "{backend}: {counts:?}");
        assert_eq!(counts.failure_reports, 1, "{backend}: {counts:?}");
        store.requeue(&Requeue::All).await.unwrap();
        worker.run_until_idle().await.unwrap();
        assert_eq!(store.report_counts().await.unwrap(), counts, "{backend}");
        store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_inbox_lists_subjects_of_new_and_old_rows() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let inbox = Inbox::new(store.clone());
        let new = inbox
            .accept(&microsoft_mail(2_000), &Envelope::import("new.eml"))
            .await
            .unwrap()
            .id;
        // A message as stored before subjects and compression were.
        let old_mail = "Subject: =?utf-8?B?UmVwb3J0IMO8YmVy?= example.org\r\n\r\nbody\r\n";
        let old = inbox
            .accept(old_mail.as_bytes(), &Envelope::import("old.eml"))
            .await
            .unwrap()
            .id;
        let db = store.db();
        db.execute(&db.statement(
            "UPDATE inbox_messages SET subject = NULL WHERE id = $1",
            vec![old.into()],
        ))
        .await
        .unwrap();
        let page = dmarcd::query::Page::new(Some(10), None, 10).unwrap();
        let (rows, _) = dmarcd::query::inbox::inbox(&store, &dmarcd::scope::Scope::All, None, page)
            .await
            .unwrap();
        let subject = |id: i64| {
            rows.iter()
                .find(|row| row.id == id)
                .and_then(|row| row.subject.clone())
        };
        assert_eq!(
            subject(new).as_deref(),
            Some(
                "Report Domain: example.com Submitter: protection.outlook.com Report-ID: 411f976a"
            ),
            "{backend}"
        );
        assert_eq!(
            subject(old).as_deref(),
            Some("Report über example.org"),
            "{backend}"
        );
        store.close().await;
    }
}
