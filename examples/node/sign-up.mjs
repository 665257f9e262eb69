// Enqueue one sign_up job for cognito-worker and wait for its result.
//
//   JOBS_QUEUE_URL=... RESULTS_QUEUE_URL=... SIGN_UP_PASSWORD=... node sign-up.mjs USERNAME [EMAIL]
//
// EMAIL defaults to USERNAME when USERNAME is an email address (an email-as-username pool), and
// must be given otherwise: the script never makes one up.
// RESULTS_QUEUE_URL is an SQS queue subscribed to the results topic (raw delivery or not).
// The password comes from the environment, never the command line (where `ps` would show it).
// The AWS SDK reads the region, credentials and AWS_ENDPOINT_URL from the environment as usual.
import { randomUUID } from "node:crypto";
import {
  ChangeMessageVisibilityCommand,
  DeleteMessageCommand,
  ReceiveMessageCommand,
  SQSClient,
  SendMessageCommand,
} from "@aws-sdk/client-sqs";

// An address as Cognito checks it: something@domain, no white space, one "@".
const EMAIL = /^[^\s@]+@[^\s@]+$/;
const [username, givenEmail] = process.argv.slice(2);
const email = givenEmail ?? (EMAIL.test(username ?? "") ? username : undefined);
const { JOBS_QUEUE_URL, RESULTS_QUEUE_URL, SIGN_UP_PASSWORD } = process.env;
if (!username || !JOBS_QUEUE_URL || !RESULTS_QUEUE_URL || !SIGN_UP_PASSWORD) {
  console.error("usage: JOBS_QUEUE_URL=... RESULTS_QUEUE_URL=... SIGN_UP_PASSWORD=... node sign-up.mjs USERNAME [EMAIL]");
  process.exit(2);
}
if (!email || !EMAIL.test(email)) {
  console.error(
    email
      ? "sign-up.mjs: EMAIL is not an email address"
      : "sign-up.mjs: USERNAME is not an email address: give the user's EMAIL as the second argument",
  );
  process.exit(2);
}
const timeoutMs = Number(process.env.RESULT_TIMEOUT_S ?? 60) * 1000;
const sqs = new SQSClient({});

// The job: one flat JSON object (docs/contract.md). A job id of our own lets us find its result.
const job = {
  version: 1,
  type: "sign_up",
  job_id: randomUUID(),
  username,
  password: SIGN_UP_PASSWORD,
  user_attributes: { email },
};
const send = { QueueUrl: JOBS_QUEUE_URL, MessageBody: JSON.stringify(job) };
if (JOBS_QUEUE_URL.endsWith(".fifo")) {
  // A user's jobs stay in order; a resend of the same job is dropped by SQS. SQS accepts only
  // ASCII letters, digits and punctuation in these ids: hash anything else.
  send.MessageGroupId = /^[\x21-\x7e]{1,128}$/.test(username)
    ? username
    : (await import("node:crypto")).createHash("sha256").update(username).digest("hex");
  send.MessageDeduplicationId = job.job_id;
}
const { MessageId } = await sqs.send(new SendMessageCommand(send));
console.error(`sent job ${job.job_id} (SQS message ${MessageId})`);

// A result arrives raw, or inside SNS's envelope when the subscription is not raw.
function resultOf(body) {
  const document = JSON.parse(body);
  return document.Type === "Notification" ? JSON.parse(document.Message) : document;
}

const deadline = Date.now() + timeoutMs;
while (Date.now() < deadline) {
  const waitSeconds = Math.max(0, Math.min(20, Math.floor((deadline - Date.now()) / 1000)));
  const { Messages = [] } = await sqs.send(
    new ReceiveMessageCommand({ QueueUrl: RESULTS_QUEUE_URL, MaxNumberOfMessages: 10, WaitTimeSeconds: waitSeconds }),
  );
  for (const message of Messages) {
    let result;
    try {
      result = resultOf(message.Body);
    } catch {
      continue; // not a result: leave it for its owner
    }
    // Ours by job id, or by the SQS message id when the worker could not read the job id.
    if (result.job_id !== job.job_id && result.sqs_message_id !== MessageId) {
      // Another job's result: visible again within 2 s for whoever waits for it (not at once,
      // or this loop would read it again and again).
      await sqs.send(new ChangeMessageVisibilityCommand({
        QueueUrl: RESULTS_QUEUE_URL, ReceiptHandle: message.ReceiptHandle, VisibilityTimeout: 2,
      }));
      continue;
    }
    await sqs.send(new DeleteMessageCommand({ QueueUrl: RESULTS_QUEUE_URL, ReceiptHandle: message.ReceiptHandle }));
    console.log(JSON.stringify(result));
    process.exit(result.status === "succeeded" ? 0 : 1);
  }
}
console.error(`no result for job ${job.job_id} within ${timeoutMs / 1000} s`);
process.exit(3);
