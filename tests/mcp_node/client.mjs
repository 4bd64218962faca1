// The TypeScript SDK's own client against Verbatim's MCP server, for tests/test_mcp.py.
//   node client.mjs http <url> [token]     streamable HTTP
//   node client.mjs stdio <command> [args...]   a server it launches
// Prints one JSON object: what each call returned, for the test to check.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [mode, target, ...rest] = process.argv.slice(2);

function transport() {
  if (mode === "http") {
    const headers = rest[0] ? { Authorization: `Bearer ${rest[0]}` } : {};
    return new StreamableHTTPClientTransport(new URL(target), { requestInit: { headers } });
  }
  return new StdioClientTransport({ command: target, args: rest, env: process.env, stderr: "inherit" });
}

const client = new Client({ name: "verbatim-node-test", version: "1.0.0" });
await client.connect(transport());
const out = { server: client.getServerVersion() };
out.tools = (await client.listTools()).tools;
// callTool checks structuredContent against the tool's outputSchema itself (ajv).
out.ask = await client.callTool({
  name: "ask",
  arguments: { question: "How often should I change the engine oil?", k: 3 },
});
const quote = out.ask.structuredContent.quotes[0];
out.read = await client.callTool({
  name: "read_document",
  arguments: { doc_id: quote.doc_id, start: quote.start, end: quote.end, context: 20 },
});
out.verify = await client.callTool({ name: "verify_citation", arguments: quote });
out.collections = await client.callTool({ name: "list_collections", arguments: {} });
out.documents = await client.callTool({
  name: "list_documents",
  arguments: { collection: "papers", limit: 2 },
});
out.resources = (await client.listResources()).resources;
out.templates = (await client.listResourceTemplates()).resourceTemplates;
out.resource = await client.readResource({ uri: quote.resource });
out.bad = {
  long: await client.callTool({
    name: "ask",
    arguments: { question: "x".repeat(Number(process.env.TOO_LONG)) },
  }),
  k: await client.callTool({ name: "ask", arguments: { question: "oil", k: 21 } }),
  collection: await client.callTool({
    name: "ask",
    arguments: { question: "oil", collection: "nope" },
  }),
  missing: await client.callTool({ name: "ask", arguments: {} }),
  typed: await client.callTool({ name: "ask", arguments: { question: 42 } }),
  unknown: await client.callTool({ name: "forget_everything", arguments: {} }),
};
await client.close();
process.stdout.write(JSON.stringify(out));
