#!/usr/bin/env node
// The installed command: runs the compiled CLI (npm install builds it via `prepare`).
import { main } from '../dist/cli.js'

main(process.argv).catch((err) => {
  process.stderr.write(`tsbeanstalkd: ${err?.stack ?? err}\n`)
  process.exit(1)
})
