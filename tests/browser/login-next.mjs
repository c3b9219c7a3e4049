// Runs the /login page's script (src/routes/pages/login.js) in a bare Node
// context, with just enough of `document` and `window` to load, and checks
// where `?next=` sends a person after signing in: any path on this site,
// never another origin. Needs no browser. Prints NEXT_OK on success.
//
//   node tests/browser/login-next.mjs
import { readFileSync } from "node:fs";
import vm from "node:vm";

const source = readFileSync(new URL("../../src/routes/pages/login.js", import.meta.url), "utf8");
const origin = "https://rampart.example";

function landingFor(search) {
  const element = { addEventListener() {} };
  const context = vm.createContext({
    URL,
    URLSearchParams,
    document: { getElementById: () => element, cookie: "" },
    window: { location: { search, origin } },
  });
  vm.runInContext(`${source}\n;globalThis.landingResult = landing();`, context);
  return context.landingResult;
}

const cases = [
  ["", "/account"],
  ["?next=", "/account"],
  ["?next=%2Fadmin", "/admin"],
  ["?next=/orders/7", "/orders/7"],
  ["?next=%2Forders%3Fa%3D1%26b%3D2", "/orders?a=1&b=2"],
  ["?next=%2Freports%2F2026%23top", "/reports/2026#top"],
  ["?next=/", "/"],
  ["?next=admin", "/account"],
  ["?next=//evil.example", "/account"],
  ["?next=%2F%2Fevil.example%2Fx", "/account"],
  ["?next=/%5Cevil.example", "/account"],
  ["?next=%5C%5Cevil.example", "/account"],
  ["?next=https://evil.example/", "/account"],
  ["?next=javascript:alert(1)", "/account"],
  ["?next=%2F%09%2Fevil.example", "/account"],
  ["?next=%2F%0A%2Fevil.example", "/account"],
  ["?next=%2F%00", "/account"],
  ["?next=/ok&next=//evil.example", "/ok"],
];

const failures = [];
for (const [search, expected] of cases) {
  const got = landingFor(search);
  if (got !== expected) failures.push(`${JSON.stringify(search)}: ${JSON.stringify(got)}, expected ${JSON.stringify(expected)}`);
}
if (failures.length) {
  console.error(failures.join("\n"));
  process.exit(1);
}
console.log("NEXT_OK");
