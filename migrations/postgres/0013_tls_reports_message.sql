-- The inbox lists the reports each message produced (issue 25): TLS reports
-- found by their message, as aggregate and failure reports already are.
CREATE INDEX tls_reports_message ON tls_reports (message_id);
