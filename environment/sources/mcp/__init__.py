"""MCP servers as a tool source: config, per-dialogue sessions on fresh copies, recorded and replayable calls."""

from environment.sources.mcp.config import McpConfig, McpServerConfig, load_mcp_config, parse_mcp_config
from environment.sources.mcp.records import McpCallOutcome, McpServerFailure, to_tool_result
from environment.sources.mcp.session import McpDialogue, McpSource
from environment.sources.mcp.toolset import McpTool, McpToolListing, namespaced
from state.mcp import Divergence, McpCallRecord, ReplayReport

__all__ = ["Divergence", "McpCallOutcome", "McpCallRecord", "McpConfig", "McpDialogue", "McpServerConfig",
           "McpServerFailure", "McpSource", "McpTool", "McpToolListing", "ReplayReport", "load_mcp_config",
           "namespaced", "parse_mcp_config", "to_tool_result"]
