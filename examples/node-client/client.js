// Calling nbo's OfferService from Node.js: the .proto is loaded at run time, no code generation.
//   npm install && node client.js localhost:50051
const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const PROTO = path.join(__dirname, "..", "..", "proto", "nbo", "v1", "offers.proto");
const definition = protoLoader.loadSync(PROTO, { keepCase: true, longs: Number, defaults: true });
const nbo = grpc.loadPackageDefinition(definition).nbo.v1;

const target = process.argv[2] || "localhost:50051";
const offers = new nbo.OfferService(target, grpc.credentials.createInsecure());

const request = {
  customer_id: "c-1001",
  context: {
    numeric: { tenure_months: 14, monthly_price: 49.0 },
    categorical: { plan: "basic", channel: "email" },
  },
};

offers.Decide(request, (err, decision) => {
  if (err) {
    console.error(`Decide failed: ${grpc.status[err.code]}: ${err.details}`);
    process.exit(1);
  }
  console.log(`offer ${decision.offer_id} (propensity ${decision.propensity.toFixed(3)}, ` +
              `control ${decision.control}, model ${decision.model_version})`);
  // ... days later, when the customer renewed (or not):
  offers.Reward({ decision_id: decision.decision_id, value: 588.0 }, (err2, reward) => {
    if (err2) {
      console.error(`Reward failed: ${grpc.status[err2.code]}: ${err2.details}`);
      process.exit(1);
    }
    console.log(`reward applied: ${reward.applied}`);
    // A bad request gets a precise status and a message naming the field:
    offers.Decide({ customer_id: "" }, (err3) => {
      console.log(`empty customer_id -> ${grpc.status[err3.code]}: ${err3.details}`);
      offers.close();
    });
  });
});
