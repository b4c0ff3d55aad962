"""Small, complete gateways written with the SDK: start here when writing your own."""
