#!/bin/bash
# Harness fixture: a test that never ends must be killed at the timeout and reported as failed.
echo "fixture: sleeping forever"
exec sleep infinity
