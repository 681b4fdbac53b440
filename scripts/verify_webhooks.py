#!/usr/bin/env python3
"""Verifies recorded webhook deliveries with the Standard Webhooks reference
library (PyPI `standardwebhooks`), as a receiver would.

    WEBHOOK_SECRET=whsec_... scripts/verify_webhooks.py deliveries.jsonl

Each line: {"headers": {...}, "body": "..."}. Prints "verified N" and exits 0
when every one verifies; exits 1 naming the first that does not.
"""
import json
import os
import sys

from standardwebhooks.webhooks import Webhook

hook = Webhook(os.environ["WEBHOOK_SECRET"])
n = 0
with open(sys.argv[1]) as f:
    for i, line in enumerate(f):
        if not line.strip():
            continue
        d = json.loads(line)
        try:
            payload = hook.verify(d["body"], d["headers"])
        except Exception as e:  # the library's own verification error, or a missing header
            print(f"delivery {i} ({d['headers'].get('webhook-id')}): {e}", file=sys.stderr)
            sys.exit(1)
        assert "type" in payload and "data" in payload and "timestamp" in payload, payload
        n += 1
print(f"verified {n}")
