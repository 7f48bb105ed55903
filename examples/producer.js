// Producer: puts N jobs on a tube, then disconnects.
//
//   node examples/producer.js [count]
//
// Talks to 127.0.0.1:11300 unless BEANSTALK_HOST / BEANSTALK_PORT say otherwise.
import fivebeans from 'fivebeans'

const host = process.env.BEANSTALK_HOST ?? '127.0.0.1'
const port = Number(process.env.BEANSTALK_PORT ?? 11300)
const tube = process.env.BEANSTALK_TUBE ?? 'emails'
const count = Number(process.argv[2] ?? 5)

// fivebeans has a callback API: call(client, 'put', ...args) turns one command into a promise.
const call = (client, method, ...args) =>
  new Promise((resolve, reject) =>
    client[method](...args, (err, ...results) => (err ? reject(new Error(String(err))) : resolve(results))),
  )

const client = new fivebeans.client(host, port)
client.on('error', (err) => {
  console.error(`producer: ${err.message}`)
  process.exit(1)
})
client.on('connect', async () => {
  await call(client, 'use', tube) // puts go to the used tube
  for (let i = 1; i <= count; i++) {
    const payload = JSON.stringify({ to: `user${i}@example.com`, subject: `Hello #${i}` })
    // priority (lower is more urgent), delay in seconds, time-to-run in seconds, body
    const [id] = await call(client, 'put', 1024, 0, 60, payload)
    console.log(`queued job ${id} on ${tube}: ${payload}`)
  }
  client.end()
})
client.connect()
