// dynalite's DynamoDB on 127.0.0.1 only, in memory: its own command line listens on every
// interface. Tables are ACTIVE at once (dynalite holds a new table in CREATING for 500 ms by
// default, and refuses item calls meanwhile). Prints one JSON line {"url": ...} once it listens,
// and serves until SIGTERM or SIGINT.
import dynalite from "dynalite";

const port = Number.parseInt(process.env.DYNALITE_PORT ?? "0", 10);
const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
server.listen(port, "127.0.0.1", () => {
  const { port: bound } = server.address();
  console.log(JSON.stringify({ url: `http://127.0.0.1:${bound}` }));
});
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    // Kept-alive connections can hold close() open: do not wait for them long.
    setTimeout(() => process.exit(0), 1000).unref();
  });
}
