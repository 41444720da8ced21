"""A small stateful MCP server: a neighbourhood library's books and loans, kept in one JSON file.

    python examples/mcp/library_server.py --state library.json [--log calls.log] [--http PORT]

Speaks MCP over stdio, or streamable HTTP with --http (written with the `mcp` SDK's FastMCP). Read tools carry `readOnlyHint`; write
tools do not. Every tool declares an output schema and returns structured content. With `--log`
(or LIBRARY_LOG) it appends one JSON line per event: `start` and `stop` of the process and one `call`
per executed tool call, so a test can see which process ran which call. Results are a pure function
of the state file and the calls (no clock, no randomness), so replaying the same calls on a copy of
the same file gives the same results.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

from mcp.server.fastmcp import FastMCP
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field


class Book(BaseModel):
    book_id: int
    title: str
    author: str
    year: int
    available: bool = Field(description="False while the book is lent.")


class Loan(BaseModel):
    loan_id: int
    book_id: int
    borrower: str
    returned: bool = False


class BookList(BaseModel):
    books: list[Book]


class LoanList(BaseModel):
    loans: list[Loan]


class Store:
    """The library's state: read from the file on each call, written back whole after each change."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any]:
        return json.loads(self.path.read_text(encoding="utf-8"))

    def save(self, data: dict[str, Any]) -> None:
        # a crash mid-write must not leave half a file: write aside, then replace
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)


def _logger(path: str | None) -> Callable[[dict[str, Any]], None]:
    def log(event: dict[str, Any]) -> None:
        if path:
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"pid": os.getpid(), **event}, sort_keys=True) + "\n")
    return log


def build_server(store: Store, log: Callable[[dict[str, Any]], None], port: int = 8000) -> FastMCP:
    server = FastMCP("library", port=port, log_level="WARNING")
    read = ToolAnnotations(readOnlyHint=True)
    write = ToolAnnotations(readOnlyHint=False, destructiveHint=False)

    def logged(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> Any:
            log({"event": "call", "tool": fn.__name__, "arguments": kwargs})
            return fn(**kwargs)
        return wrapper

    @server.tool(annotations=read)
    @logged
    def search_books(author: str | None = None, available_only: bool = False) -> BookList:
        """Books of the library, optionally only one author's (substring, any case) or only those not lent."""
        data = store.load()
        books = [Book(**b) for b in data["books"]]
        if author:
            books = [b for b in books if author.lower() in b.author.lower()]
        if available_only:
            books = [b for b in books if b.available]
        return BookList(books=books)

    @server.tool(annotations=read)
    @logged
    def get_book(book_id: int) -> Book:
        """One book by its id."""
        for book in store.load()["books"]:
            if book["book_id"] == book_id:
                return Book(**book)
        raise ValueError(f"no book with id {book_id}")

    @server.tool(annotations=read)
    @logged
    def list_loans(borrower: str | None = None, include_returned: bool = False) -> LoanList:
        """Loans, optionally one borrower's (exact name); open loans only unless include_returned."""
        loans = [Loan(**loan) for loan in store.load()["loans"]]
        if borrower:
            loans = [loan for loan in loans if loan.borrower == borrower]
        if not include_returned:
            loans = [loan for loan in loans if not loan.returned]
        return LoanList(loans=loans)

    @server.tool(annotations=write)
    @logged
    def lend_book(book_id: int, borrower: str) -> Loan:
        """Lend an available book to a borrower; returns the new loan."""
        data = store.load()
        book = next((b for b in data["books"] if b["book_id"] == book_id), None)
        if book is None:
            raise ValueError(f"no book with id {book_id}")
        if not book["available"]:
            raise ValueError(f"book {book_id} is already lent")
        if not borrower.strip():
            raise ValueError("borrower must not be empty")
        loan = Loan(loan_id=data["next_loan_id"], book_id=book_id, borrower=borrower.strip())
        data["next_loan_id"] += 1
        book["available"] = False
        data["loans"].append(loan.model_dump())
        store.save(data)
        return loan

    @server.tool(annotations=write)
    @logged
    def return_book(loan_id: int) -> Loan:
        """Close an open loan; the book becomes available again."""
        data = store.load()
        loan = next((x for x in data["loans"] if x["loan_id"] == loan_id), None)
        if loan is None:
            raise ValueError(f"no loan with id {loan_id}")
        if loan["returned"]:
            raise ValueError(f"loan {loan_id} was already returned")
        loan["returned"] = True
        for book in data["books"]:
            if book["book_id"] == loan["book_id"]:
                book["available"] = True
        store.save(data)
        return Loan(**loan)

    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", required=True, help="the JSON file holding the library (read and written)")
    parser.add_argument("--log", default=os.environ.get("LIBRARY_LOG") or None,
                        help="append one JSON line per start, call and stop (default: $LIBRARY_LOG)")
    parser.add_argument("--http", type=int, metavar="PORT",
                        help="serve streamable HTTP on 127.0.0.1:PORT/mcp instead of stdio")
    args = parser.parse_args(argv)
    state = Path(args.state)
    if not state.is_file():
        sys.exit(f"library_server: state file {state} does not exist")
    log = _logger(args.log)
    log({"event": "start", "state": str(state)})
    try:
        build_server(Store(state), log, args.http or 8000).run("streamable-http" if args.http else "stdio")
    finally:
        log({"event": "stop"})


if __name__ == "__main__":
    main()
