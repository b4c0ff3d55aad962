"""Large packages: chunked, resumable uploads stored once (``store``), the upload
bookkeeping (``uploads``), the requests and chunk consumers the routers serve (``server``)
and the claim check on the intake path (``claims``)."""
