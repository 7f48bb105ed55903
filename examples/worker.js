// Worker: watches a tube, reserves jobs, processes them and deletes them.
// A job whose processing fails is released with a delay and tried again;
// after MAX_ATTEMPTS failures it is buried for a human to look at.
//
//   node examples/worker.js
//
// Talks to 127.0.0.1:11300 unless BEANSTALK_HOST / BEANSTALK_PORT say otherwise.
// FAIL_RATE (0..1, default 0.2) makes that share of jobs fail, to show retries.
import fivebeans from 'fivebeans'

const host = process.env.BEANSTALK_HOST ?? '127.0.0.1'
const port = Number(process.env.BEANSTALK_PORT ?? 11300)
const tube = process.env.BEANSTALK_TUBE ?? 'emails'
const failRate = Number(process.env.FAIL_RATE ?? 0.2)
const RETRY_DELAY_SECS = 1
const MAX_ATTEMPTS = 3

// fivebeans has a callback API: call(client, 'reserve') turns one command into a promise.
const call = (client, method, ...args) =>
  new Promise((resolve, reject) =>
    client[method](...args, (err, ...results) => (err ? reject(new Error(String(err))) : resolve(results))),
  )

/** The actual work. Here: pretend to send an email. */
async function processJob(job) {
  if (Math.random() < failRate) throw new Error('mail server unavailable')
  console.log(`sent email to ${job.to}: ${job.subject}`)
}

const client = new fivebeans.client(host, port)
client.on('error', (err) => {
  console.error(`worker: ${err.message}`)
  process.exit(1)
})
client.on('connect', async () => {
  await call(client, 'watch', tube)
  await call(client, 'ignore', 'default') // only our tube
  console.log(`worker watching ${tube}`)
  for (;;) {
    // Blocks until a job is ready; the job is ours for its time-to-run.
    const [id, body] = await call(client, 'reserve')
    try {
      await processJob(JSON.parse(body.toString()))
      await call(client, 'destroy', id) // fivebeans names `delete` destroy
      console.log(`processed job ${id}`)
    } catch (err) {
      const [stats] = await call(client, 'stats_job', id)
      if (stats.releases + 1 >= MAX_ATTEMPTS) {
        await call(client, 'bury', id, stats.pri)
        console.log(`job ${id} failed ${MAX_ATTEMPTS} times (${err.message}); buried`)
      } else {
        // Same priority, back on the tube after the delay.
        await call(client, 'release', id, stats.pri, RETRY_DELAY_SECS)
        console.log(`job ${id} failed (${err.message}); released, retry in ${RETRY_DELAY_SECS}s`)
      }
    }
  }
})
process.on('SIGINT', () => {
  client.end()
  process.exit(0)
})
client.connect()
