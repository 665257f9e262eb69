// fauxqs's SQS and SNS on 127.0.0.1 only: its own command line listens on every interface.
// Prints one JSON line {"url": ...} once it listens, and serves until SIGTERM or SIGINT.
import { buildApp } from "fauxqs";

const port = Number.parseInt(process.env.FAUXQS_PORT ?? "0", 10);
const app = buildApp({ logger: false });
const url = await app.listen({ port, host: "127.0.0.1" });
console.log(JSON.stringify({ url }));
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    app.close().finally(() => process.exit(0));
  });
}
