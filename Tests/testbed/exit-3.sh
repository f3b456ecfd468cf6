#!/bin/bash
# Harness fixture: the testbed must pass a test's exit status through unchanged.
echo "fixture: exiting 3"
exit 3
