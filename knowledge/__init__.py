"""External knowledge for the user agent: a corpus chunked, embedded and searched behind a small interface."""
