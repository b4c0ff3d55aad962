-- lienthong ledger, version 3: gateway identity — signing certificates and signature policy.

-- What the router does with an XML signature on a gateway's packages:
--   required           unsigned packages are refused (SIGNATURE_REQUIRED)
--   verify-if-present  unsigned packages pass; a signature, when present, must verify
--   off                signatures are not looked at
ALTER TABLE gateways
    ADD COLUMN signature_policy text NOT NULL DEFAULT 'verify-if-present'
        CHECK (signature_policy IN ('required', 'verify-if-present', 'off'));

-- The certificates a gateway signs with. Several may be valid at once, so a gateway can
-- roll to a new key without downtime: register the new one, switch, revoke the old one.
CREATE TABLE certificates (
    fingerprint        text PRIMARY KEY CHECK (fingerprint ~ '^[0-9a-f]{64}$'),  -- sha256(DER)
    gateway_id         text NOT NULL REFERENCES gateways (id),
    subject            text NOT NULL,
    issuer             text NOT NULL,
    serial             text NOT NULL,
    key_type           text NOT NULL,                 -- RSA-2048, EC-secp256r1, ...
    not_before         timestamptz NOT NULL,          -- validity window used by the router:
    not_after          timestamptz NOT NULL,          -- the certificate's, or narrower
    der                bytea NOT NULL,
    added_at           timestamptz NOT NULL DEFAULT now(),
    added_by           text NOT NULL DEFAULT current_user,
    revoked_at         timestamptz,
    revoked_reason     text,
    CHECK (not_before < not_after)
);
CREATE INDEX certificates_gateway ON certificates (gateway_id);
CREATE INDEX certificates_expiry ON certificates (not_after) WHERE revoked_at IS NULL;
