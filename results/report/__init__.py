"""`report`: one self-contained HTML dataset card with charts and a dialogue browser."""
