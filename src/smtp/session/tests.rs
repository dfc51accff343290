//! The session fed bytes directly, no sockets.

use super::*;

fn session(recipients: &[&str]) -> Session {
    let config = SessionConfig {
        hostname: "mx.test".to_string(),
        recipients: RecipientPolicy::from_entries(
            &recipients.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
        ),
        max_message_bytes: 1000,
        max_recipients: 2,
        max_messages: 10,
        max_errors: 5,
        max_commands_without_message: 20,
        tls_available: false,
        budget: DataBudget::new(1_000_000),
    };
    Session::new(Arc::new(config), "192.0.2.1".parse().unwrap()).0
}

fn replies(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::Reply(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_whole_transaction_yields_one_message_then_waits_for_the_store() {
    let mut session = session(&["dmarc@example.com"]);
    let events = session.feed(
        b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<dmarc@example.com>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n",
    );
    let texts = replies(&events);
    assert_eq!(texts.len(), 4, "{texts:?}");
    assert!(texts[3].starts_with("354"));
    let Some(Event::Message(message)) = events.last() else {
        panic!("{events:?}")
    };
    assert_eq!(message.rcpt_to, vec!["dmarc@example.com"]);
    assert!(message.data.ends_with(b"Subject: x\r\n\r\nhi\r\n"));
    assert!(session.is_storing());
    // QUIT waits until the message is stored.
    assert_eq!(
        session.message_stored(Ok(7)),
        reply("250 2.0.0 Message accepted (inbox 7)")
    );
    let after = session.feed(&[]);
    assert_eq!(replies(&after), vec!["221 2.0.0 Bye\r\n"]);
    assert_eq!(after.last(), Some(&Event::Close));
}

#[test]
fn a_failed_store_is_a_temporary_error() {
    let mut session = session(&[]);
    session.feed(b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nDATA\r\nhi\r\n.\r\n");
    let answer = session.message_stored(Err("disk full".into()));
    assert_eq!(
        answer,
        reply("451 4.3.0 Temporary failure storing the message, try again later")
    );
}

#[test]
fn commands_out_of_order_and_limits() {
    let mut session = session(&["@example.com"]);
    let texts = replies(&session.feed(b"MAIL FROM:<a@b>\r\n"));
    assert!(texts[0].starts_with("503"));
    let texts = replies(&session.feed(
        b"EHLO c\r\nRCPT TO:<x@example.com>\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@other.org>\r\nRCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nRCPT TO:<c@example.com>\r\n",
    ));
    let codes: Vec<&str> = texts.iter().map(|t| &t[..3]).collect();
    assert_eq!(codes, vec!["250", "503", "250", "550", "250", "250", "452"]);
}

#[test]
fn data_split_across_reads_and_dot_stuffing() {
    let mut session = session(&[]);
    session.feed(b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nDATA\r\n");
    assert!(session.feed(b"line one\r\n..dotted\r").is_empty());
    assert!(session.feed(b"\n.").is_empty());
    let events = session.feed(b"\r\n");
    let Some(Event::Message(message)) = events.last() else {
        panic!("{events:?}")
    };
    assert!(
        message.data.ends_with(b"line one\r\n.dotted\r\n"),
        "{:?}",
        String::from_utf8_lossy(&message.data)
    );
}

#[test]
fn input_pipelined_after_starttls_is_discarded() {
    let config = SessionConfig {
        tls_available: true,
        ..(*session(&[]).config).clone()
    };
    let mut session = Session::new(Arc::new(config), "192.0.2.1".parse().unwrap()).0;
    session.feed(b"EHLO c\r\n");
    // A man in the middle appends a command in clear text after STARTTLS.
    let events = session.feed(b"STARTTLS\r\nMAIL FROM:<evil@x>\r\n");
    assert_eq!(replies(&events), vec!["220 2.0.0 Ready to start TLS\r\n"]);
    assert_eq!(events.last(), Some(&Event::StartTls));
    session.tls_started("TLS1.3 TEST".into());
    assert!(session.feed(&[]).is_empty());
    // The session starts over: EHLO is needed again.
    let texts = replies(&session.feed(b"MAIL FROM:<a@b>\r\n"));
    assert!(texts[0].starts_with("503"), "{texts:?}");
}

fn open_transaction() -> Session {
    let mut session = session(&[]);
    session.feed(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\n");
    session
}

#[test]
fn a_bdat_size_near_usize_max_is_refused_not_wrapped() {
    let mut session = open_transaction();
    session.feed(b"BDAT 10\r\n0123456789");
    let texts = replies(&session.feed(b"BDAT 18446744073709551610\r\n"));
    assert!(texts.is_empty(), "{texts:?}");
    assert!(session.in_data(), "the chunk is read past, not stored");
    assert!(session.data.is_empty());
}

#[test]
fn zero_size_bdat_chunks_are_answered_at_once() {
    let mut session = open_transaction();
    assert_eq!(
        replies(&session.feed(b"BDAT 0\r\n")),
        vec!["250 2.0.0 0 octets received\r\n"]
    );
    session.feed(b"BDAT 3\r\nabc");
    let events = session.feed(b"BDAT 0 LAST\r\n");
    let Some(Event::Message(message)) = events.last() else {
        panic!("{events:?}")
    };
    assert!(message.data.ends_with(b"abc"));
}

#[test]
fn an_empty_message_ends_at_the_first_dot() {
    let mut session = open_transaction();
    let events = session.feed(b"DATA\r\n.\r\n");
    assert!(
        matches!(events.last(), Some(Event::Message(_))),
        "{events:?}"
    );
    let mut session = open_transaction();
    let events = session.feed(b"DATA\r\n..leading dot\r\n.\r\n");
    let Some(Event::Message(message)) = events.last() else {
        panic!("{events:?}")
    };
    assert!(message.data.ends_with(b"\r\n.leading dot\r\n"));
}

#[test]
fn a_bare_cr_in_the_end_of_data_sequence_closes_the_session() {
    let mut session = open_transaction();
    let events = session.feed(b"DATA\r\nhello\r\n.\r\r\nMAIL FROM:<forged@x>\r\n");
    let texts = replies(&events);
    assert!(texts.last().unwrap().starts_with("554 5.6.0"), "{texts:?}");
    assert_eq!(events.last(), Some(&Event::Close));
    assert!(!events
        .iter()
        .any(|event| matches!(event, Event::Message(_))));
}

#[test]
fn the_rest_of_a_line_cut_at_the_limit_is_not_a_command() {
    let mut session = open_transaction();
    let mut line = b"NOOP ".to_vec();
    line.extend(std::iter::repeat_n(b'A', MAX_COMMAND_LINE - 5));
    assert!(replies(&session.feed(&line)).is_empty());
    let texts = replies(&session.feed(b"MORE\r\nRSET\r\n"));
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(texts[0].starts_with("500 5.5.2"));
    assert!(texts[1].starts_with("250 2.0.0 OK"));
}

#[test]
fn vrfy_help_noop_and_auth() {
    let mut session = session(&[]);
    let texts = replies(
        &session.feed(b"EHLO c\r\nVRFY x\r\nHELP\r\nNOOP\r\nAUTH PLAIN AGFiYwBk\r\nSTARTTLS\r\n"),
    );
    let codes: Vec<&str> = texts.iter().map(|t| &t[..3]).collect();
    assert_eq!(codes, vec!["250", "252", "214", "250", "502", "502"]);
}

#[test]
fn commands_that_bring_no_message_nearer_are_capped() {
    let mut session = session(&[]);
    // EHLO and 19 NOOPs: the 20 allowed.
    let mut input = b"EHLO c\r\n".to_vec();
    input.extend(b"NOOP\r\n".repeat(19));
    assert!(replies(&session.feed(&input))
        .iter()
        .all(|r| r.starts_with("250")));
    // A message clears the count.
    session.feed(b"MAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nDATA\r\nhi\r\n.\r\n");
    session.message_stored(Ok(1));
    assert!(replies(&session.feed(&b"RSET\r\n".repeat(20)))
        .iter()
        .all(|r| r.starts_with("250")));
    let events = session.feed(b"NOOP\r\n");
    assert_eq!(
        replies(&events),
        vec!["421 4.7.0 Too many commands without a message, closing the connection\r\n"]
    );
    assert_eq!(events.last(), Some(&Event::Close));
}

/// A session whose budget is `budget` bytes, with the transaction open.
fn session_with_budget(budget: &Arc<DataBudget>) -> Session {
    let config = SessionConfig {
        budget: Arc::clone(budget),
        ..(*session(&[]).config).clone()
    };
    let mut session = Session::new(Arc::new(config), "192.0.2.1".parse().unwrap()).0;
    session.feed(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\n");
    session
}

#[test]
fn data_past_the_shared_budget_gets_452_after_its_end() {
    let budget = DataBudget::new(1_000);
    let mut holder = session_with_budget(&budget);
    holder.feed(b"DATA\r\n");
    holder.feed(&[b'a'; 500]);
    assert!(budget.used() >= 500);
    let mut late = session_with_budget(&budget);
    late.feed(b"DATA\r\n");
    assert!(late.feed(&[b'b'; 600]).is_empty(), "no reply inside data");
    assert!(late.data.is_empty(), "nothing is kept");
    assert_eq!(
        replies(&late.feed(b"\r\n.\r\n")),
        vec![format!("{NO_ROOM}\r\n")]
    );
    // A declared size the budget cannot hold now is refused at once.
    let texts = replies(&late.feed(b"MAIL FROM:<a@b> SIZE=900\r\n"));
    assert_eq!(texts, vec![format!("{NO_ROOM}\r\n")]);
    // The holder finishes; its share comes back once the message is stored.
    let events = holder.feed(b"\r\n.\r\n");
    assert!(matches!(events.last(), Some(Event::Message(_))));
    holder.message_stored(Ok(1));
    assert_eq!(budget.used(), 0);
    let texts = replies(&late.feed(b"MAIL FROM:<a@b> SIZE=900\r\n"));
    assert!(texts[0].starts_with("250"), "{texts:?}");
}

#[test]
fn a_bdat_chunk_past_the_budget_is_read_past_then_refused() {
    let budget = DataBudget::new(600);
    let mut session = session_with_budget(&budget);
    assert!(replies(&session.feed(b"BDAT 700 LAST\r\n")).is_empty());
    let texts = replies(&session.feed(&[b'x'; 700]));
    assert_eq!(texts, vec![format!("{NO_ROOM}\r\n")]);
    assert_eq!(budget.used(), 0);
}

#[test]
fn a_declared_size_is_never_reserved_up_front() {
    let budget = DataBudget::new(1_000_000);
    let mut session = session_with_budget(&budget);
    session.feed(b"RSET\r\nMAIL FROM:<a@b> SIZE=999000\r\nRCPT TO:<x@y>\r\nDATA\r\n");
    session.feed(b"Subject: small\r\n");
    assert!(budget.used() < 4096, "{} bytes held", budget.used());
    assert!(session.data.capacity() < 4096);
}
