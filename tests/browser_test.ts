/**
 * The browser page (`web/index.html`) in headless Chromium (Debian's `chromium`, driven by
 * playwright-core): it decodes on the browser's WebGPU when Chromium gives an adapter (here a
 * software one: SwiftShader), else on the CPU backend, and its `out` and `lse` must match Deno's
 * float64 reference. When WebGPU is unavailable the page must say why, and the test prints the
 * flags it tried. Ignored, with the reason printed, where Chromium is missing; in CI it fails.
 */

import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { assertMatchesReference, buildBundle, ROOT } from "./bundle.ts";
import { hasFile, ignoreWithout } from "./requirements.ts";

const CHROMIUM = Deno.env.get("CHROMIUM_PATH") ?? "/usr/bin/chromium";

/** Chromium flags for WebGPU without a GPU: software Vulkan (SwiftShader) behind WebGPU. */
export const WEBGPU_FLAGS: readonly string[] = [
  "--enable-unsafe-webgpu",
  "--enable-features=Vulkan,WebGPU",
  "--use-vulkan=swiftshader",
  "--use-webgpu-adapter=swiftshader",
  "--use-angle=swiftshader",
  "--disable-vulkan-surface",
  "--ignore-gpu-blocklist",
];

const TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
};

/** Serves web/, dist/ and examples/*.js from the repository on 127.0.0.1 (a secure context). */
function serve(): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    const path = decodeURIComponent(new URL(request.url).pathname);
    if (!/^\/(web|dist|examples)\/[\w./-]+\.(html|js)$/.test(path) || path.includes("..")) {
      return new Response("not found", { status: 404 });
    }
    try {
      const body = await Deno.readFile(`${ROOT}${path.slice(1)}`);
      return new Response(body, { headers: { "content-type": TYPES[path.split(".").pop()!] } });
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
}

interface PageResult {
  backend?: string;
  adapter?: string;
  adapterInfo?: string | null;
  reason?: string | null;
  out: number[];
  lse: number[];
  error?: string;
}

const NAME = "web/index.html decodes in headless Chromium and matches the reference";

Deno.test({
  name: NAME,
  ignore: ignoreWithout(
    await hasFile(CHROMIUM),
    NAME,
    `Chromium not found at ${CHROMIUM} (apt-get install -y chromium, or set CHROMIUM_PATH)`,
  ),
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    try {
      await Deno.stat(CHROMIUM);
    } catch {
      throw new Error(
        `Chromium not found at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_PATH)`,
      );
    }
    await buildBundle();
    const server = serve();
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ["--no-sandbox", ...WEBGPU_FLAGS],
    });
    try {
      const base = `http://127.0.0.1:${server.addr.port}/web/index.html`;
      const open = async (query: string): Promise<{ result: PageResult; text: string }> => {
        const page = await browser.newPage();
        const errors: string[] = [];
        page.on("pageerror", (error) => errors.push(String(error)));
        await page.goto(`${base}${query}`);
        await page.waitForFunction(() => "leanResult" in globalThis, undefined, {
          timeout: 180_000,
        });
        const result = await page.evaluate(() =>
          (globalThis as unknown as { leanResult: PageResult }).leanResult
        );
        const text = await page.locator("#log").innerText();
        await page.close();
        assert.deepEqual(errors, [], "no uncaught page errors");
        assert.equal(result.error, undefined, `the page failed: ${result.error}`);
        return { result, text };
      };

      await t.step("navigator.gpu (WebGPU), or the CPU with the reason", async () => {
        const { result, text } = await open("");
        if (result.backend === "webgpu") {
          console.log(`Chromium WebGPU adapter: ${result.adapterInfo}`);
          assert.match(text, /\nWebGPU adapter: \S/);
          assert.equal(result.reason, null);
          assert.match(text, /^backend: webgpu/);
        } else {
          // Chromium gave no adapter: the page must say why and still decode on the CPU.
          assert.equal(result.backend, "cpu");
          assert.ok(result.reason, "the page says why WebGPU was not used");
          assert.match(text, /WebGPU not used: /);
          console.log(
            `Chromium gave no WebGPU adapter with flags ${WEBGPU_FLAGS.join(" ")}: ` +
              `${result.reason}; the page ran on the CPU backend`,
          );
        }
        assertMatchesReference(result, `browser ${result.backend}`);
        assert.match(text, /max \|out - reference\| = \d\.\d\de-\d+/);
      });

      await t.step("?backend=cpu", async () => {
        const { result, text } = await open("?backend=cpu");
        assert.equal(result.backend, "cpu");
        assert.match(text, /^backend: cpu/);
        assertMatchesReference(result, "browser cpu");
      });
    } finally {
      await browser.close();
      await server.shutdown();
    }
  },
});
