-- lienthong ledger, version 7: national statistics (issue #16).
--
-- Bussiness/Paper of each document: true when the sender says a paper copy goes alongside
-- the electronic one (Paper = 1), false when it says not (0), NULL when the package does not
-- say (older gateways, status packages). The statistics count "sent with paper" from it.
ALTER TABLE documents ADD COLUMN paper boolean;

-- The statistics read one period of documents by sender and of deliveries by recipient:
-- both already have a time index (documents_received, deliveries_created).
