//! The SMTP conversation as a state machine (sans-IO): bytes in, replies
//! and events out. Command parsing is smtp-proto's; this module decides
//! what each command means for a receive-only report mailbox.
//!
//! Rules that matter (specs/smtp-receiving.md):
//! - message data has no line-length limit, only a total size limit; past
//!   it the rest is read and discarded, then `552 5.3.4`;
//! - only CRLF.CRLF ends DATA (smtp-proto ignores bare LF/CR dots), so SMTP
//!   smuggling cannot hide a second message inside the first;
//! - `250` is only sent after the server reports the message stored
//!   (`message_stored`), `451 4.3.0` when it could not be;
//! - input pipelined after STARTTLS is thrown away (RFC 3207 §5).

use std::net::IpAddr;
use std::sync::Arc;

use smtp_proto::request::receiver::{
    BdatReceiver, DataReceiver, DummyDataReceiver, RequestReceiver,
};
use smtp_proto::{Error as ProtoError, Request};

use super::budget::{DataBudget, Reservation};
pub use super::recipients::RecipientPolicy;

/// What a session needs to know about the server.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub hostname: String,
    pub recipients: RecipientPolicy,
    pub max_message_bytes: usize,
    pub max_recipients: usize,
    pub max_messages: usize,
    pub max_errors: usize,
    /// Commands outside a mail transaction (NOOP, RSET, VRFY, HELP, EHLO…)
    /// allowed between two messages: a client that only keeps the session
    /// busy is sent away.
    pub max_commands_without_message: usize,
    /// Whether STARTTLS is offered.
    pub tls_available: bool,
    /// The message data every session holds at once.
    pub budget: Arc<DataBudget>,
}

/// A message ready to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub helo: Option<String>,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The message as received, with a `Received:` header prepended.
    pub data: Vec<u8>,
}

/// What the socket loop must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Write these bytes to the client.
    Reply(Vec<u8>),
    /// Store this message, then call `message_stored`; no more input is
    /// processed until then.
    Message(ReceivedMessage),
    /// Start TLS now (the 220 reply has been emitted before this).
    StartTls,
    /// Close the connection (after writing the replies before this).
    Close,
}

enum State {
    Command(RequestReceiver),
    Data(DataReceiver),
    /// The message passed the size limit: read to its end, keep nothing.
    DataTooBig(DummyDataReceiver),
    /// The data budget ran out: read to the end, keep nothing, then 452.
    DataNoRoom(DummyDataReceiver),
    Bdat(BdatReceiver),
    /// A BDAT chunk to read past; the reply to send once it is read, if any.
    BdatDiscard(DummyDataReceiver, Option<&'static str>),
    /// A message was handed to the server; waiting for `message_stored`.
    Storing,
    Closed,
}

pub struct Session {
    config: Arc<SessionConfig>,
    peer: IpAddr,
    state: State,
    /// Input received but not yet processed.
    pending: Vec<u8>,
    helo: Option<String>,
    esmtp: bool,
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
    /// The message being received, starting with its Received header. It
    /// grows as data arrives (never reserved from the declared SIZE), its
    /// capacity covered by `reservation`.
    data: Vec<u8>,
    header_len: usize,
    /// The share of the data budget `data` holds.
    reservation: Reservation,
    /// Commands outside a transaction since the last message.
    commands_without_message: usize,
    /// `TLS 1.3, TLS13_AES_256_GCM_SHA384` once TLS is up.
    tls: Option<String>,
    errors: usize,
    messages: usize,
    /// Inside a command line that was refused as too long.
    skipping_long_line: bool,
}

/// A data receiver that has "seen" the CRLF ending the DATA command, so
/// that a message whose first line is `.` (an empty message) ends there and
/// a leading `..` is un-stuffed (RFC 5321 §4.5.2).
fn data_receiver() -> DataReceiver {
    let mut receiver = DataReceiver::new();
    let mut discarded = Vec::new();
    receiver.ingest(&mut b"\r\n".iter(), &mut discarded);
    receiver
}

/// Longest command line accepted (RFC 5321 requires 512; extensions need more).
const MAX_COMMAND_LINE: usize = 4096;

const TOO_BIG: &str = "552 5.3.4 Message size exceeds the fixed maximum message size";

/// The data budget is spent (RFC 1870 section 6.1 and RFC 3463: temporary,
/// the mail system is full).
const NO_ROOM: &str = "452 4.3.1 Insufficient system storage, try again later";

fn reply(text: &str) -> Event {
    Event::Reply(format!("{text}\r\n").into_bytes())
}

impl Session {
    /// A new session and its greeting.
    pub fn new(config: Arc<SessionConfig>, peer: IpAddr) -> (Session, Event) {
        let greeting = reply(&format!("220 {} ESMTP dmarcd ready", config.hostname));
        let reservation = Reservation::new(Arc::clone(&config.budget));
        let session = Session {
            config,
            peer,
            state: State::Command(RequestReceiver::default()),
            pending: Vec::new(),
            helo: None,
            esmtp: false,
            mail_from: None,
            rcpt_to: Vec::new(),
            data: Vec::new(),
            header_len: 0,
            reservation,
            commands_without_message: 0,
            tls: None,
            errors: 0,
            messages: 0,
            skipping_long_line: false,
        };
        (session, greeting)
    }

    /// Whether the session waits for `message_stored`.
    pub fn is_storing(&self) -> bool {
        matches!(self.state, State::Storing)
    }

    /// Whether message data is being received (for the data timeout).
    pub fn in_data(&self) -> bool {
        matches!(
            self.state,
            State::Data(_)
                | State::DataTooBig(_)
                | State::DataNoRoom(_)
                | State::Bdat(_)
                | State::BdatDiscard(..)
        )
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Called once TLS is established: the session starts over (RFC 3207 §4.2).
    pub fn tls_started(&mut self, description: String) {
        self.tls = Some(description);
        self.helo = None;
        self.esmtp = false;
        self.reset_transaction();
        self.pending.clear();
        self.state = State::Command(RequestReceiver::default());
    }

    /// Feeds received bytes; returns what to do. Stops early after a
    /// `Message` event, keeping the rest of the input for later.
    pub fn feed(&mut self, input: &[u8]) -> Vec<Event> {
        self.pending.extend_from_slice(input);
        let mut events = Vec::new();
        let pending = std::mem::take(&mut self.pending);
        let mut bytes = pending.iter();
        while !bytes.as_slice().is_empty() {
            if matches!(self.state, State::Storing | State::Closed) {
                break;
            }
            let stop = self.step(&mut bytes, &mut events);
            if stop {
                break;
            }
        }
        if !self.is_closed() {
            self.pending = bytes.as_slice().to_vec();
        }
        events
    }

    /// The outcome of storing the message handed over in `Event::Message`.
    pub fn message_stored(&mut self, result: Result<i64, String>) -> Event {
        self.state = State::Command(RequestReceiver::default());
        self.reset_transaction();
        match result {
            Ok(id) => {
                self.messages += 1;
                self.commands_without_message = 0;
                reply(&format!("250 2.0.0 Message accepted (inbox {id})"))
            }
            Err(reason) => {
                tracing::warn!(peer = %self.peer, %reason, "could not store a message; asked the sender to retry");
                reply("451 4.3.0 Temporary failure storing the message, try again later")
            }
        }
    }

    fn reset_transaction(&mut self) {
        self.mail_from = None;
        self.rcpt_to.clear();
        self.data = Vec::new();
        self.header_len = 0;
        self.reservation.release();
    }

    /// Makes room in `data` for `incoming` more bytes, within the budget:
    /// the buffer doubles (as a `Vec` would) up to what the size limit can
    /// need, or grows by just what is needed when doubling would not fit.
    /// False when even that does not fit.
    fn room_for(&mut self, incoming: usize) -> bool {
        let wanted = self.data.len().saturating_add(incoming);
        if wanted <= self.data.capacity() {
            return true;
        }
        let most = self
            .header_len
            .saturating_add(self.config.max_message_bytes)
            .saturating_add(incoming);
        let doubled = self.data.capacity().saturating_mul(2).min(most).max(wanted);
        for capacity in [doubled, wanted] {
            if self.reservation.grow_to(capacity) {
                self.data.reserve_exact(capacity - self.data.len());
                return true;
            }
        }
        false
    }

    /// Drops the message being received for want of room; the rest of its
    /// data is read past.
    fn out_of_room(&mut self) {
        self.data = Vec::new();
        self.reservation.release();
    }

    /// Counts a command that brings no message nearer; true when the
    /// session is over the limit (and closed, the command unanswered).
    fn idle_command(&mut self, events: &mut Vec<Event>) -> bool {
        self.commands_without_message += 1;
        if self.commands_without_message > self.config.max_commands_without_message {
            events.push(reply(
                "421 4.7.0 Too many commands without a message, closing the connection",
            ));
            events.push(Event::Close);
            self.state = State::Closed;
            return true;
        }
        false
    }

    /// Processes input in the current state; true when processing must pause.
    fn step(&mut self, bytes: &mut std::slice::Iter<'_, u8>, events: &mut Vec<Event>) -> bool {
        let max = self.config.max_message_bytes;
        if matches!(self.state, State::Command(_)) {
            return self.command_input(bytes, events);
        }
        match &mut self.state {
            State::Command(_) => false,
            State::Data(_) => {
                if !self.room_for(bytes.as_slice().len()) {
                    if let State::Data(receiver) = &self.state {
                        self.state = State::DataNoRoom(DummyDataReceiver::new_data(receiver));
                    }
                    self.out_of_room();
                    return false;
                }
                let State::Data(receiver) = &mut self.state else {
                    return false;
                };
                let done = receiver.ingest(bytes, &mut self.data);
                if done {
                    return self.finish_message(events);
                }
                if self.data.len() - self.header_len > max {
                    let dummy = DummyDataReceiver::new_data(receiver);
                    self.out_of_room();
                    self.state = State::DataTooBig(dummy);
                }
                false
            }
            State::DataTooBig(receiver) | State::DataNoRoom(receiver) => {
                if receiver.ingest(bytes) {
                    let answer = if matches!(self.state, State::DataTooBig(_)) {
                        TOO_BIG
                    } else {
                        NO_ROOM
                    };
                    self.reset_transaction();
                    self.state = State::Command(RequestReceiver::default());
                    events.push(reply(answer));
                }
                false
            }
            State::Bdat(receiver) => {
                if receiver.ingest(bytes, &mut self.data) {
                    let last = receiver.is_last;
                    if last {
                        return self.finish_message(events);
                    }
                    let size = self.data.len() - self.header_len;
                    self.state = State::Command(RequestReceiver::default());
                    events.push(reply(&format!("250 2.0.0 {size} octets received")));
                }
                false
            }
            State::BdatDiscard(receiver, then) => {
                let then = *then;
                if receiver.ingest(bytes) {
                    self.state = State::Command(RequestReceiver::default());
                    if let Some(text) = then {
                        events.push(reply(text));
                    }
                }
                false
            }
            State::Storing | State::Closed => true,
        }
    }

    /// Command mode: refuses lines past `MAX_COMMAND_LINE` (skipping the
    /// rest of such a line, however it arrives), parses the others.
    fn command_input(
        &mut self,
        bytes: &mut std::slice::Iter<'_, u8>,
        events: &mut Vec<Event>,
    ) -> bool {
        let rest = bytes.as_slice();
        let newline = memchr::memchr(b'\n', rest);
        if self.skipping_long_line {
            match newline {
                Some(position) => {
                    *bytes = rest[position + 1..].iter();
                    self.skipping_long_line = false;
                    return self.error("500 5.5.2 Line too long", events);
                }
                None => {
                    *bytes = [].iter();
                    return false;
                }
            }
        }
        let State::Command(receiver) = &mut self.state else {
            return false;
        };
        let partial = receiver.buf().len();
        let line_length = partial + newline.map_or(rest.len(), |position| position + 1);
        // Without a newline yet, reaching the limit is already too long
        // (smtp-proto gives up at exactly MAX_COMMAND_LINE buffered bytes).
        if line_length > MAX_COMMAND_LINE || (newline.is_none() && line_length >= MAX_COMMAND_LINE)
        {
            *receiver = RequestReceiver::default();
            match newline {
                Some(position) => {
                    *bytes = rest[position + 1..].iter();
                    return self.error("500 5.5.2 Line too long", events);
                }
                None => {
                    *bytes = [].iter();
                    self.skipping_long_line = true;
                    return false;
                }
            }
        }
        match receiver.ingest(bytes) {
            Ok(request) => {
                let request = request.into_owned();
                self.command(request, bytes, events)
            }
            Err(ProtoError::NeedsMoreData { .. }) => false,
            Err(error) => {
                if matches!(error, ProtoError::ResponseTooLong) {
                    // The rest of that line must not be read as a command.
                    self.skipping_long_line = true;
                    return false;
                }
                let text = match error {
                    ProtoError::ResponseTooLong => "500 5.5.2 Line too long".to_string(),
                    ProtoError::UnknownCommand => {
                        "500 5.5.2 Syntax error, command unrecognized".to_string()
                    }
                    ProtoError::InvalidSenderAddress => {
                        "501 5.1.7 Invalid sender address".to_string()
                    }
                    ProtoError::InvalidRecipientAddress => {
                        "501 5.1.3 Invalid recipient address".to_string()
                    }
                    ProtoError::SyntaxError { syntax } => format!("501 5.5.4 Syntax: {syntax}"),
                    ProtoError::InvalidParameter { param } => {
                        format!("501 5.5.4 Invalid parameter {param}")
                    }
                    ProtoError::UnsupportedParameter { param } => {
                        format!("504 5.5.4 Unsupported parameter {param}")
                    }
                    other => format!("500 5.5.2 {other:?}"),
                };
                self.error(&text, events)
            }
        }
    }

    fn error(&mut self, text: &str, events: &mut Vec<Event>) -> bool {
        self.errors += 1;
        if self.errors > self.config.max_errors {
            events.push(reply("421 4.7.0 Too many errors, closing the connection"));
            events.push(Event::Close);
            self.state = State::Closed;
            return true;
        }
        events.push(reply(text));
        false
    }

    fn command(
        &mut self,
        request: Request<String>,
        bytes: &mut std::slice::Iter<'_, u8>,
        events: &mut Vec<Event>,
    ) -> bool {
        let config = Arc::clone(&self.config);
        let keeps_busy = matches!(
            request,
            Request::Ehlo { .. }
                | Request::Helo { .. }
                | Request::Lhlo { .. }
                | Request::Rset
                | Request::Noop { .. }
                | Request::Vrfy { .. }
                | Request::Expn { .. }
                | Request::Help { .. }
        );
        if keeps_busy && self.idle_command(events) {
            return true;
        }
        match request {
            Request::Ehlo { host } => {
                self.helo = Some(host);
                self.esmtp = true;
                self.reset_transaction();
                let mut lines = vec![
                    config.hostname.clone(),
                    "PIPELINING".to_string(),
                    format!("SIZE {}", config.max_message_bytes),
                    "8BITMIME".to_string(),
                    "SMTPUTF8".to_string(),
                    "ENHANCEDSTATUSCODES".to_string(),
                    "CHUNKING".to_string(),
                ];
                if config.tls_available && self.tls.is_none() {
                    lines.push("STARTTLS".to_string());
                }
                lines.push("HELP".to_string());
                let mut text = String::new();
                for (index, line) in lines.iter().enumerate() {
                    let separator = if index + 1 == lines.len() { ' ' } else { '-' };
                    text.push_str(&format!("250{separator}{line}\r\n"));
                }
                events.push(Event::Reply(text.into_bytes()));
            }
            Request::Helo { host } | Request::Lhlo { host } => {
                self.helo = Some(host);
                self.esmtp = false;
                self.reset_transaction();
                events.push(reply(&format!("250 {}", config.hostname)));
            }
            Request::Mail { from } => {
                if self.helo.is_none() {
                    return self.error("503 5.5.1 Say EHLO or HELO first", events);
                }
                if self.mail_from.is_some() {
                    return self.error("503 5.5.1 Sender already given", events);
                }
                if self.messages >= config.max_messages {
                    events.push(reply("421 4.7.0 Too many messages in this session, reconnect to send more"));
                    events.push(Event::Close);
                    self.state = State::Closed;
                    return true;
                }
                if from.size > config.max_message_bytes {
                    return self.error(TOO_BIG, events);
                }
                // A declared size is only checked, never reserved: the
                // buffer grows with the data that actually arrives.
                if from.size > config.budget.available() {
                    events.push(reply(NO_ROOM));
                    return false;
                }
                self.mail_from = Some(from.address);
                events.push(reply("250 2.1.0 Sender OK"));
            }
            Request::Rcpt { to } => {
                if self.mail_from.is_none() {
                    return self.error("503 5.5.1 Need MAIL before RCPT", events);
                }
                if self.rcpt_to.len() >= config.max_recipients {
                    if self.idle_command(events) {
                        return true;
                    }
                    events.push(reply("452 4.5.3 Too many recipients"));
                    return false;
                }
                // A receive-only server: mail for anyone else is refused,
                // never relayed.
                if !config.recipients.accepts(&to.address) {
                    return self.error("550 5.1.1 No such mailbox here; this server does not relay", events);
                }
                self.rcpt_to.push(to.address);
                events.push(reply("250 2.1.5 Recipient OK"));
            }
            Request::Data => {
                if self.mail_from.is_none() {
                    return self.error("503 5.5.1 Need MAIL before DATA", events);
                }
                if self.rcpt_to.is_empty() {
                    return self.error("554 5.5.1 No valid recipients", events);
                }
                // The trace header goes in first, so the message is never copied to prepend it.
                let header = self.received_header();
                if !self.room_for(header.len()) {
                    events.push(reply(NO_ROOM));
                    return false;
                }
                self.data.extend_from_slice(header.as_bytes());
                self.header_len = self.data.len();
                self.state = State::Data(data_receiver());
                events.push(reply("354 Start mail input; end with <CRLF>.<CRLF>"));
            }
            Request::Bdat { chunk_size, is_last } => {
                if self.mail_from.is_none() || self.rcpt_to.is_empty() {
                    // The chunk still has to be read past (none to read if it is empty).
                    if chunk_size > 0 {
                        self.state = State::BdatDiscard(DummyDataReceiver::new_bdat(chunk_size), None);
                    }
                    return self.error("503 5.5.1 Need MAIL and RCPT before BDAT", events);
                }
                if self.data.is_empty() {
                    let header = self.received_header();
                    if !self.room_for(header.len()) {
                        self.reset_transaction();
                        self.state = State::BdatDiscard(DummyDataReceiver::new_bdat(chunk_size), Some(NO_ROOM));
                        return false;
                    }
                    self.data.extend_from_slice(header.as_bytes());
                    self.header_len = self.data.len();
                }
                let received = self.data.len() - self.header_len;
                // Compared without adding: a chunk size near usize::MAX must not wrap.
                if chunk_size > config.max_message_bytes.saturating_sub(received) {
                    // The transaction fails; later chunks get 503 until a new MAIL.
                    self.reset_transaction();
                    self.state = State::BdatDiscard(DummyDataReceiver::new_bdat(chunk_size), Some(TOO_BIG));
                    return false;
                }
                if !self.room_for(chunk_size) {
                    self.reset_transaction();
                    self.state = State::BdatDiscard(DummyDataReceiver::new_bdat(chunk_size), Some(NO_ROOM));
                    return false;
                }
                // A zero-size chunk (RFC 3030 allows `BDAT 0 LAST`) has no bytes
                // to wait for: answer it now.
                if chunk_size == 0 {
                    if is_last {
                        return self.finish_message(events);
                    }
                    events.push(reply(&format!("250 2.0.0 {received} octets received")));
                    return false;
                }
                self.state = State::Bdat(BdatReceiver::new(chunk_size, is_last));
            }
            Request::Rset => {
                self.reset_transaction();
                events.push(reply("250 2.0.0 OK"));
            }
            Request::Noop { .. } => events.push(reply("250 2.0.0 OK")),
            Request::Vrfy { .. } => events.push(reply("252 2.5.0 Cannot VRFY user, but will accept the message")),
            Request::Expn { .. } => events.push(reply("502 5.5.1 EXPN is not supported")),
            Request::Help { .. } => events.push(reply(
                "214 2.0.0 dmarcd receives DMARC and TLS reports: EHLO, MAIL, RCPT, DATA, BDAT, QUIT",
            )),
            Request::StartTls => {
                if !config.tls_available {
                    return self.error("502 5.5.1 STARTTLS is not available", events);
                }
                if self.tls.is_some() {
                    return self.error("503 5.5.1 TLS is already active", events);
                }
                events.push(reply("220 2.0.0 Ready to start TLS"));
                events.push(Event::StartTls);
                // Anything pipelined after STARTTLS was sent in clear text
                // and must not be taken as if it came over TLS.
                *bytes = [].iter();
                return true;
            }
            Request::Quit => {
                events.push(reply("221 2.0.0 Bye"));
                events.push(Event::Close);
                self.state = State::Closed;
                return true;
            }
            Request::Auth { .. } => {
                return self.error("502 5.5.1 Authentication is not supported: this server only receives", events)
            }
            Request::Etrn { .. } | Request::Atrn { .. } | Request::Burl { .. } => {
                return self.error("502 5.5.1 Command not implemented", events)
            }
        }
        false
    }

    fn finish_message(&mut self, events: &mut Vec<Event>) -> bool {
        // Data ended by CRLF.CRLF ends in CRLF (or is empty). Anything else
        // means a bare CR slipped into the end sequence (`CRLF . CR CR LF`),
        // which a proper client never sends: refuse it and hang up rather
        // than read what follows as commands (SMTP smuggling).
        let body = &self.data[self.header_len..];
        if matches!(self.state, State::Data(_)) && !body.is_empty() && !body.ends_with(b"\r\n") {
            self.reset_transaction();
            events.push(reply(
                "554 5.6.0 Malformed end of data (bare CR); closing the connection",
            ));
            events.push(Event::Close);
            self.state = State::Closed;
            return true;
        }
        let message = std::mem::take(&mut self.data);
        self.header_len = 0;
        self.state = State::Storing;
        events.push(Event::Message(ReceivedMessage {
            helo: self.helo.clone(),
            mail_from: self.mail_from.clone().unwrap_or_default(),
            rcpt_to: self.rcpt_to.clone(),
            data: message,
        }));
        true
    }

    /// RFC 5321 §4.4 trace header, with the TLS version and cipher when used.
    fn received_header(&self) -> String {
        let protocol = match (self.esmtp, self.tls.is_some()) {
            (true, true) => "ESMTPS",
            (true, false) => "ESMTP",
            (false, true) => "SMTPS",
            (false, false) => "SMTP",
        };
        let helo = self.helo.as_deref().unwrap_or("unknown");
        let tls = self
            .tls
            .as_deref()
            .map(|tls| format!("\r\n\t(using {tls})"))
            .unwrap_or_default();
        let date = chrono::Utc::now().to_rfc2822();
        format!(
            "Received: from {helo} ([{}])\r\n\tby {} (dmarcd) with {protocol}{tls};\r\n\t{date}\r\n",
            self.peer, self.config.hostname
        )
    }
}

#[cfg(test)]
mod tests;
